//! Network configuration: finding it in the conf dir as libcni's users
//! (containerd, the kubelet's dockershim) do, parsing a `.conflist` or a
//! single-plugin `.conf`, and building the config each plugin reads on stdin
//! (`name`, `cniVersion`, `prevResult` and `runtimeConfig` injected).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A network: an ordered chain of plugins sharing a name and version.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    /// The list asks that CHECK be skipped.
    pub disable_check: bool,
    /// Each plugin's own config, `type` guaranteed a plain file name.
    pub plugins: Vec<Map<String, Value>>,
    /// The whole list as read, kept in the cache so DEL uses what ADD used.
    pub raw: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("no network config (*.conflist, *.conf, *.json) in {0}")]
    NoConfig(PathBuf),
    #[error("reading network config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The extensions libcni reads, in no order of preference.
const EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// The config files in `dir`, lexically ordered by file name.
pub async fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfError> {
    let io = |source| ConfError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let path = entry.path();
        let ours = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if ours && !hidden && entry.file_type().await.map_err(io)?.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The network the pods join: the lexically first file in `dir` that parses
/// (all three extensions sorted together, as containerd and the kubelet do;
/// broken files are skipped with a warning so a stray file cannot take the
/// node's network down).
pub async fn load_dir(dir: &Path) -> Result<NetworkConfigList, ConfError> {
    for path in config_files(dir).await? {
        match load_file(&path).await {
            Ok(list) => return Ok(list),
            Err(e) => tracing::warn!(error = %e, "skipping network config"),
        }
    }
    Err(ConfError::NoConfig(dir.to_path_buf()))
}

/// One file: a list if it ends in `.conflist`, else a single plugin's config.
pub async fn load_file(path: &Path) -> Result<NetworkConfigList, ConfError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| ConfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let invalid = |reason: String| ConfError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let list = if path.extension().is_some_and(|e| e == "conflist") {
        value
    } else {
        wrap_single(value).map_err(invalid)?
    };
    NetworkConfigList::from_value(list).map_err(invalid)
}

/// A single-plugin config as a one-plugin list (libcni's ConfListFromConf).
pub fn wrap_single(conf: Value) -> Result<Value, String> {
    let Value::Object(map) = &conf else {
        return Err("not a JSON object".into());
    };
    let name = map.get("name").cloned().unwrap_or(Value::Null);
    let version = map.get("cniVersion").cloned().unwrap_or(Value::Null);
    Ok(serde_json::json!({"cniVersion": version, "name": name, "plugins": [conf]}))
}

impl NetworkConfigList {
    pub fn from_value(raw: Value) -> Result<Self, String> {
        let Value::Object(map) = &raw else {
            return Err("not a JSON object".into());
        };
        let text = |key: &str| {
            map.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("{key} missing or not a string"))
        };
        let name = text("name")?;
        let cni_version = text("cniVersion")?;
        let disable_check = map
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(Value::Array(items)) = map.get("plugins") else {
            return Err("plugins missing or not a list".into());
        };
        if items.is_empty() {
            return Err("plugins is empty".into());
        }
        let mut plugins = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(p) = item else {
                return Err(format!("plugins[{i}] is not an object"));
            };
            match p.get("type").and_then(Value::as_str) {
                Some(t) if is_plain_name(t) => {}
                _ => {
                    return Err(format!(
                        "plugins[{i}].type missing or not a plain file name"
                    ))
                }
            }
            plugins.push(p.clone());
        }
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            plugins,
            raw,
        })
    }
}

/// A plugin type names a binary inside the bin dirs, never a path out of them.
fn is_plain_name(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

/// The type (binary name) of a validated plugin config.
pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The stdin of one plugin run: its config with the network's `name` and
/// `cniVersion`, the chain's `prevResult`, and `runtimeConfig` holding each
/// runtime value whose capability the plugin declares (libcni's
/// buildOneConfig and injectRuntimeConfig).
pub fn plugin_config(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    runtime: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    match prev_result {
        Some(prev) => {
            conf.insert("prevResult".into(), prev.clone());
        }
        None => {
            conf.remove("prevResult");
        }
    }
    let declared = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut rt = Map::new();
    for (capability, on) in &declared {
        if on.as_bool() == Some(true) {
            if let Some(v) = runtime.get(capability) {
                rt.insert(capability.clone(), v.clone());
            }
        }
    }
    if !rt.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rt));
    }
    Value::Object(conf)
}

/// Whether `version` is at least `min` (dotted numbers; garbage is "old").
pub fn version_at_least(version: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let mut next = || parts.next().flatten();
    match (next(), next(), next().or(Some(0))) {
        (Some(a), Some(b), Some(c)) => (a, b, c) >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> NetworkConfigList {
        NetworkConfigList::from_value(json!({
            "cniVersion": "1.0.0",
            "name": "net",
            "plugins": [
                {"type": "bridge", "bridge": "br0", "name": "ignored", "cniVersion": "0.1.0"},
                {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn parses_a_conflist() {
        let l = list();
        assert_eq!(l.name, "net");
        assert_eq!(l.cni_version, "1.0.0");
        assert!(!l.disable_check);
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(plugin_type(&l.plugins[1]), "portmap");
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in [
            json!([]),
            json!({"name": "n", "plugins": [{"type": "x"}]}),
            json!({"cniVersion": "1.0.0", "name": "n", "plugins": []}),
            json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"bridge": "x"}]}),
            json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../../bin/sh"}]}),
            json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": ".."}]}),
        ] {
            assert!(NetworkConfigList::from_value(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn wraps_a_single_conf() {
        let conf = json!({"cniVersion": "0.4.0", "name": "single", "type": "bridge"});
        let l = NetworkConfigList::from_value(wrap_single(conf.clone()).unwrap()).unwrap();
        assert_eq!(l.name, "single");
        assert_eq!(l.cni_version, "0.4.0");
        assert_eq!(Value::Object(l.plugins[0].clone()), conf);
    }

    #[test]
    fn injects_name_version_prev_result_and_declared_capabilities_only() {
        let l = list();
        let mut rt = Map::new();
        rt.insert(
            "portMappings".into(),
            json!([{"hostPort": 1, "containerPort": 2}]),
        );
        rt.insert("bandwidth".into(), json!({"ingressRate": 1}));
        let prev = json!({"cniVersion": "1.0.0", "ips": []});

        let first = plugin_config(&l, &l.plugins[0], None, &rt);
        assert_eq!(first["name"], "net");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert_eq!(first["bridge"], "br0");
        assert!(first.get("prevResult").is_none());
        assert!(
            first.get("runtimeConfig").is_none(),
            "bridge declares no capability"
        );

        let second = plugin_config(&l, &l.plugins[1], Some(&prev), &rt);
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 1, "containerPort": 2}]}),
            "bandwidth is declared false, so not passed"
        );
    }

    #[test]
    fn versions() {
        assert!(version_at_least("1.0.0", (0, 4, 0)));
        assert!(version_at_least("0.4.0", (0, 4, 0)));
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
        assert!(version_at_least("1.1", (1, 0, 0)));
        assert!(!version_at_least("x", (0, 1, 0)));
    }

    #[tokio::test]
    async fn loads_the_lexically_first_valid_file() {
        let dir = std::env::temp_dir().join(format!("skiff-conftest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("05-broken.conflist"), "{not json").unwrap();
        std::fs::write(
            dir.join("10-b.conf"),
            r#"{"cniVersion":"0.4.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("20-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.join(".hidden.conflist"), "{}").unwrap();
        std::fs::write(dir.join("README"), "x").unwrap();
        let files = config_files(&dir).await.unwrap();
        assert_eq!(files.len(), 3);
        let l = load_dir(&dir).await.unwrap();
        assert_eq!(l.name, "b");
        std::fs::remove_file(dir.join("10-b.conf")).unwrap();
        assert_eq!(load_dir(&dir).await.unwrap().name, "a");
        std::fs::remove_file(dir.join("20-a.conflist")).unwrap();
        assert!(matches!(load_dir(&dir).await, Err(ConfError::NoConfig(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(load_dir(&dir).await, Err(ConfError::NoConfig(_))));
    }
}
