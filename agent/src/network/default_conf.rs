//! The pod network a node gets when nobody configured one: a
//! `10-skiff.conflist` written from the node's podCIDR. `bridge` on
//! `skiff0` (the node is the pods' gateway; hairpin so a pod reaches itself
//! through a Service; no masquerade, the node routes do that, see
//! `routes`), `host-local` addresses from the podCIDR, then `portmap` for
//! hostPorts. A config someone else wrote is never touched, and ours (that
//! file name, network name `skiff`) steps aside for it; ours is rewritten
//! when the podCIDR or MTU changes.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::atomic::write_atomic;
use super::cidr::{Cidr, InvalidCidr};
use super::cmd;
use super::conf::{self, ConfError};

pub const FILE_NAME: &str = "10-skiff.conflist";
pub const NETWORK_NAME: &str = "skiff";
pub const BRIDGE: &str = "skiff0";

/// What [`ensure`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    Written(PathBuf),
    Unchanged(PathBuf),
    /// Someone else's config is in the conf dir; nothing written.
    UserConfig(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum DefaultConfError {
    #[error("pod CIDR: {0}")]
    Cidr(#[from] InvalidCidr),
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// host-local's allocations: `<agent dir>/cni-ipam/<network>/<ip>`.
pub fn ipam_dir(agent_dir: &Path) -> PathBuf {
    agent_dir.join("cni-ipam")
}

/// The default network config for a node with `pod_cidr`.
pub fn conflist(pod_cidr: &Cidr, ipam_dir: &Path, mtu: Option<u32>) -> Value {
    let default_dst = if pod_cidr.is_ipv4() {
        "0.0.0.0/0"
    } else {
        "::/0"
    };
    let mut bridge = json!({
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": pod_cidr.to_string()}]],
            "routes": [{"dst": default_dst}],
            "dataDir": ipam_dir.to_string_lossy(),
        }
    });
    if let (Some(mtu), Some(map)) = (mtu, bridge.as_object_mut()) {
        map.insert("mtu".into(), json!(mtu));
    }
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            bridge,
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// Writes the default config into `conf_dir` unless a config of someone
/// else's is there (then removes ours, if any); rewrites ours when it
/// differs from what `pod_cidr` (and the default route's MTU) make now.
pub async fn ensure(
    conf_dir: &Path,
    pod_cidr: &str,
    agent_dir: &Path,
) -> Result<Ensured, DefaultConfError> {
    let cidr: Cidr = pod_cidr.parse()?;
    let ours = conf_dir.join(FILE_NAME);
    let mut existing: Option<Value> = None;
    let mut user: Option<PathBuf> = None;
    for path in conf::config_files(conf_dir).await? {
        match read_ours(&path).await {
            Some(v) => existing = Some(v),
            None => user = user.or(Some(path)),
        }
    }
    if let Some(user) = user {
        // A network installed after ours takes over: ours could sort first
        // and shadow it. Attached pods keep their config in the CNI cache.
        if existing.is_some() {
            remove_ours(&ours).await?;
        }
        return Ok(Ensured::UserConfig(user));
    }
    let want = conflist(
        &cidr,
        &ipam_dir(agent_dir),
        default_route_mtu(cidr.is_ipv4()).await,
    );
    if existing.as_ref() == Some(&want) {
        return Ok(Ensured::Unchanged(ours));
    }
    let mut bytes = serde_json::to_vec_pretty(&want).unwrap_or_default();
    bytes.push(b'\n');
    write_atomic(&ours, bytes)
        .await
        .map_err(|source| DefaultConfError::Write {
            path: ours.clone(),
            source,
        })?;
    tracing::info!(path = %ours.display(), pod_cidr = %cidr, "wrote the default CNI config");
    Ok(Ensured::Written(ours))
}

async fn remove_ours(ours: &Path) -> Result<(), DefaultConfError> {
    match tokio::fs::remove_file(ours).await {
        Ok(()) => {
            tracing::info!(path = %ours.display(), "removed the default CNI config: another network is configured");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DefaultConfError::Write {
            path: ours.to_path_buf(),
            source,
        }),
    }
}

/// The config at `path` if skiff wrote it (our file name and network name).
async fn read_ours(path: &Path) -> Option<Value> {
    if path.file_name()? != FILE_NAME {
        return None;
    }
    let bytes = tokio::fs::read(path).await.ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    (v.get("name")? == NETWORK_NAME).then_some(v)
}

/// The MTU of the interface the node's single default route leaves by;
/// `None` (the bridge plugin's default) when that is not simple to say.
pub async fn default_route_mtu(ipv4: bool) -> Option<u32> {
    let family = if ipv4 { "-4" } else { "-6" };
    let routes = cmd::run("ip", &["-j", family, "route", "show", "default"], None)
        .await
        .ok()?;
    let dev = single_route_dev(&routes)?;
    let links = cmd::run("ip", &["-j", "link", "show", "dev", &dev], None)
        .await
        .ok()?;
    let links: Value = serde_json::from_str(&links).ok()?;
    let mtu = links.get(0)?.get("mtu")?.as_u64()?;
    u32::try_from(mtu).ok().filter(|m| *m >= 576)
}

/// The device of the only default route in `ip -j route` output; none for
/// several routes, multipath or odd names.
fn single_route_dev(json: &str) -> Option<String> {
    let routes: Value = serde_json::from_str(json).ok()?;
    let [route] = routes.as_array()?.as_slice() else {
        return None;
    };
    if route.get("nexthops").is_some() {
        return None;
    }
    let dev = route.get("dev")?.as_str()?;
    let plain = !dev.is_empty()
        && dev.len() <= 15
        && !dev.starts_with('-')
        && !dev.contains(['/', ' ', '\0']);
    plain.then(|| dev.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::conf::NetworkConfigList;

    #[test]
    fn the_default_conflist() {
        let cidr: Cidr = "10.244.7.0/24".parse().unwrap();
        let v = conflist(
            &cidr,
            Path::new("/var/lib/skiff/agent/cni-ipam"),
            Some(1400),
        );
        let list = NetworkConfigList::from_value(v.clone()).unwrap();
        assert_eq!(list.name, "skiff");
        assert_eq!(list.cni_version, "1.0.0");
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "skiff0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["mtu"], 1400);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.7.0/24");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/skiff/agent/cni-ipam");
        let portmap = &v["plugins"][1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);
        assert_eq!(portmap["snat"], true);

        let v6 = conflist(&"fd00:7::/64".parse().unwrap(), Path::new("/x"), None);
        assert_eq!(v6["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
        assert!(v6["plugins"][0].get("mtu").is_none());
    }

    #[test]
    fn default_route_device() {
        let one = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]"#;
        assert_eq!(single_route_dev(one).as_deref(), Some("eth0"));
        let two = r#"[{"dst":"default","dev":"eth0"},{"dst":"default","dev":"eth1"}]"#;
        assert_eq!(single_route_dev(two), None);
        let multi = r#"[{"dst":"default","nexthops":[{"dev":"a"},{"dev":"b"}]}]"#;
        assert_eq!(single_route_dev(multi), None);
        assert_eq!(single_route_dev("[]"), None);
        assert_eq!(single_route_dev(r#"[{"dst":"default","dev":"-x"}]"#), None);
    }

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn writes_rewrites_and_respects_user_configs() {
        let t = TempDir(std::env::temp_dir().join(format!("skiff-defconf-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&t.0);
        let conf_dir = t.0.join("net.d");
        let agent = t.0.join("agent");
        let ours = conf_dir.join(FILE_NAME);

        assert!(matches!(
            ensure(&conf_dir, "nonsense", &agent).await,
            Err(DefaultConfError::Cidr(_))
        ));
        assert_eq!(
            ensure(&conf_dir, "10.244.7.0/24", &agent).await.unwrap(),
            Ensured::Written(ours.clone())
        );
        assert_eq!(
            ensure(&conf_dir, "10.244.7.0/24", &agent).await.unwrap(),
            Ensured::Unchanged(ours.clone())
        );
        assert_eq!(
            ensure(&conf_dir, "10.244.9.0/24", &agent).await.unwrap(),
            Ensured::Written(ours.clone())
        );
        let list = conf::load_dir(&conf_dir).await.unwrap();
        assert_eq!(
            list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.9.0/24"
        );
        let names: Vec<_> = std::fs::read_dir(&conf_dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp files left");

        // A file of ours by name but not by content is the user's.
        std::fs::write(
            &ours,
            r#"{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        assert_eq!(
            ensure(&conf_dir, "10.244.7.0/24", &agent).await.unwrap(),
            Ensured::UserConfig(ours.clone())
        );
        assert_eq!(conf::load_dir(&conf_dir).await.unwrap().name, "mine");

        // A user's config arriving beside ours: ours steps aside, the
        // user's is left as it is.
        std::fs::remove_file(&ours).unwrap();
        ensure(&conf_dir, "10.244.7.0/24", &agent).await.unwrap();
        let user = conf_dir.join("20-user.conf");
        let text = r#"{"cniVersion":"0.4.0","name":"u","type":"bridge"}"#;
        std::fs::write(&user, text).unwrap();
        assert_eq!(
            ensure(&conf_dir, "10.244.8.0/24", &agent).await.unwrap(),
            Ensured::UserConfig(user.clone())
        );
        assert!(!ours.exists());
        assert_eq!(std::fs::read_to_string(&user).unwrap(), text);
        assert_eq!(conf::load_dir(&conf_dir).await.unwrap().name, "u");
    }
}
