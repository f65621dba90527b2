//! `skiff up`: a working single-node cluster on this machine. The control
//! plane and a node (agent, service proxy, DNS) run in one process sharing
//! one data dir, the admin kubeconfig is merged into the user's kubeconfig as
//! context `skiff`. Run again after a stop or a reboot, it comes back with
//! its objects, and the agent adopts (or restarts) the pods.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::config::{Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

use crate::{AgentArgs, ServerArgs};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Folder for the cluster's state: store, certificates, images, pods.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// etcd endpoints; the embedded store when unset.
    #[arg(long, env = "SKIFF_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,
    /// This node's name [default: the hostname].
    #[arg(long)]
    node_name: Option<String>,
    /// This node's address, also where pods reach the API server [default:
    /// the address of the default route's interface].
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The kubeconfig the cluster is merged into as context `skiff` (made
    /// the current one) [default: the first file of $KUBECONFIG, else
    /// ~/.kube/config]; "" merges nowhere.
    #[arg(long)]
    merge_kubeconfig: Option<String>,
    /// One more `skiff server` flag, e.g. --server-arg=--disable=servicelb.
    /// Repeatable.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// One more `skiff agent` flag, e.g. --agent-arg=--node-label=disk=ssd.
    /// Repeatable.
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    agent_args: Vec<String>,
}

/// Parses a component's flags as its own command would, defaults included.
#[derive(Parser)]
struct Flags<T: clap::Args> {
    #[command(flatten)]
    inner: T,
}

fn parse<T: clap::Args>(command: &str, args: &[String]) -> Result<T> {
    let argv = std::iter::once(format!("skiff {command}")).chain(args.iter().cloned());
    Ok(Flags::<T>::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("skiff up: {command} flags: {e}"))?
        .inner)
}

pub async fn run(a: UpArgs) -> Result<()> {
    let started = Instant::now();
    let node_name = match a.node_name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?
            .trim()
            .to_lowercase(),
    };
    let node_ip = match a.node_ip {
        Some(ip) => ip,
        None => skiff_agent::kubelet::nodeinfo::node_ip()
            .await
            .context("no address for this node: give --node-ip")?
            .parse()?,
    };
    let data_dir = a.data_dir.display().to_string();
    let mut server = vec![
        "--data-dir".to_string(),
        data_dir.clone(),
        "--https-listen-port".into(),
        a.https_listen_port.to_string(),
        "--advertise-address".into(),
        node_ip.to_string(),
        "--tls-san".into(),
        node_ip.to_string(),
    ];
    if let Some(ep) = &a.datastore_endpoint {
        server.extend(["--datastore-endpoint".to_string(), ep.clone()]);
    }
    server.extend(a.server_args);
    let server: ServerArgs = parse("server", &server)?;
    let running = crate::start_server(server).await?;
    progress(
        started,
        &format!("control plane on https://{}", running.addr),
    );

    let node_kubeconfig = running.component_kubeconfig(
        &format!("node-{node_name}"),
        &format!("system:node:{node_name}"),
        &["system:nodes"],
    )?;
    let mut agent = vec![
        "--kubeconfig".to_string(),
        node_kubeconfig.display().to_string(),
        "--data-dir".into(),
        data_dir,
        "--node-name".into(),
        node_name.clone(),
        "--node-ip".into(),
        node_ip.to_string(),
        // The control plane runs here too, as k3s labels its servers.
        "--node-label=node-role.kubernetes.io/control-plane=true".into(),
    ];
    agent.extend(a.agent_args);
    let agent: AgentArgs = parse("agent", &agent)?;
    let node = crate::run_node(agent);

    let merged = match a.merge_kubeconfig {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => default_kubeconfig(),
    };
    let admin = running.kubeconfig.clone();
    let token = a.data_dir.join("server").join("node-token");
    let port = running.addr.port();
    let announce = async move {
        let client = crate::component_client(&admin, "skiff").await?;
        wait_ready(&client, &node_name, started).await;
        if let Some(path) = &merged {
            merge_kubeconfig(&admin, path)
                .with_context(|| format!("merging into {}", path.display()))?;
            progress(started, &format!("context skiff in {}", path.display()));
        }
        eprintln!(
            "skiff up: ready; kubeconfig {} — try: kubectl get nodes",
            admin.display()
        );
        eprintln!(
            "skiff up: another machine joins with: skiff agent --server https://{node_ip}:{port} --token $(cat {})",
            token.display()
        );
        std::future::pending::<Result<()>>().await
    };
    let renew = crate::until_renewal(running.renew_at);
    let r = tokio::select! {
        r = node => r.context("node"),
        r = announce => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = renew => {
            // Control plane and node start again with new certificates;
            // containers keep running and are adopted.
            running.stop();
            return crate::exec_self();
        }
    };
    running.stop();
    r
}

fn progress(started: Instant, what: &str) {
    eprintln!(
        "skiff up: {what} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// Reports the node's registration and readiness as they happen: Ready as
/// this run's agent reported it (a restart finds the last run's status).
async fn wait_ready(client: &kube::Client, name: &str, started: Instant) {
    let since = k8s_openapi::jiff::Timestamp::now().as_second() - 1;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut registered = false;
    loop {
        if let Ok(Some(n)) = nodes.get_opt(name).await {
            if !registered {
                registered = true;
                progress(started, &format!("node {name} registered"));
            }
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.last_heartbeat_time
                            .as_ref()
                            .is_some_and(|t| t.0.as_second() >= since)
                });
            if ready {
                progress(started, &format!("node {name} Ready"));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where kubectl looks first: $KUBECONFIG's first file, else ~/.kube/config.
pub(crate) fn default_kubeconfig() -> Option<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_deref()
        .and_then(|v| std::env::split_paths(v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// Puts the admin kubeconfig's cluster, user and context into `path` under
/// the name `skiff` (replacing an earlier one) and makes it current; the
/// file's other entries stay as they are.
fn merge_kubeconfig(admin: &Path, path: &Path) -> Result<()> {
    merge_kubeconfig_as(admin, path, "skiff")
}

/// As `merge_kubeconfig`, under the name `name`.
pub(crate) fn merge_kubeconfig_as(admin: &Path, path: &Path, name: &str) -> Result<()> {
    let ours = Kubeconfig::read_from(admin)?;
    let mut theirs = if path.exists() {
        Kubeconfig::read_from(path)?
    } else {
        Kubeconfig::default()
    };
    let cluster = ours.clusters.into_iter().next().context("no cluster")?;
    let user = ours.auth_infos.into_iter().next().context("no user")?;
    let mut context = ours.contexts.into_iter().next().context("no context")?;
    theirs.clusters.retain(|c| c.name != name);
    theirs.auth_infos.retain(|u| u.name != name);
    theirs.contexts.retain(|c| c.name != name);
    theirs.clusters.push(NamedCluster {
        name: name.into(),
        ..cluster
    });
    theirs.auth_infos.push(NamedAuthInfo {
        name: name.into(),
        ..user
    });
    if let Some(c) = context.context.as_mut() {
        c.cluster = name.into();
        c.user = Some(name.into());
    }
    theirs.contexts.push(NamedContext {
        name: name.into(),
        ..context
    });
    theirs.current_context = Some(name.into());
    theirs.api_version.get_or_insert_with(|| "v1".into());
    theirs.kind.get_or_insert_with(|| "Config".into());
    let owner = sudo_id("SUDO_UID").zip(sudo_id("SUDO_GID"));
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
    }
    let text = serde_yaml::to_string(&theirs)?;
    // Credentials inside: readable by its owner only, written whole.
    let tmp = path.with_extension("skiff-tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
    }
    // Run through sudo: the file stays the user's.
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn sudo_id(var: &str) -> Option<u32> {
    std::env::var(var).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = r#"{"apiVersion": "v1", "kind": "Config",
      "clusters": [{"name": "skiff", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}}],
      "users": [{"name": "skiff-admin", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
      "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "skiff-admin"}}],
      "current-context": "skiff"}"#;

    #[test]
    fn merging_keeps_other_entries_and_replaces_ours() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin.yaml");
        std::fs::write(&admin, ADMIN).unwrap();
        let user = dir.path().join("kube").join("config");
        std::fs::create_dir_all(user.parent().unwrap()).unwrap();
        std::fs::write(
            &user,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\nusers:\n- name: me\n  user:\n    token: t\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: me\ncurrent-context: prod\n",
        )
        .unwrap();
        merge_kubeconfig(&admin, &user).unwrap();
        merge_kubeconfig(&admin, &user).unwrap();
        let merged = Kubeconfig::read_from(&user).unwrap();
        let names = |v: Vec<String>| v.join(",");
        assert_eq!(
            names(merged.clusters.iter().map(|c| c.name.clone()).collect()),
            "prod,skiff"
        );
        assert_eq!(
            names(merged.auth_infos.iter().map(|c| c.name.clone()).collect()),
            "me,skiff"
        );
        let ctx = merged.contexts.iter().find(|c| c.name == "skiff").unwrap();
        assert_eq!(ctx.context.as_ref().unwrap().user.as_deref(), Some("skiff"));
        assert_eq!(merged.current_context.as_deref(), Some("skiff"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&user).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A missing file is created.
        let fresh = dir.path().join("new").join("config");
        merge_kubeconfig(&admin, &fresh).unwrap();
        assert_eq!(Kubeconfig::read_from(&fresh).unwrap().clusters.len(), 1);
    }
}
