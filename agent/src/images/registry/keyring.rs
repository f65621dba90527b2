//! Registry credentials from a pod's `imagePullSecrets`, matched to an image
//! the way kubelet's credential keyring does: secrets of type
//! `kubernetes.io/dockerconfigjson` (`{"auths": {…}}`) and the older
//! `kubernetes.io/dockercfg` (the map itself); keys are registry hosts or
//! URLs, optionally with a path prefix and `*` / `?` globs per host label;
//! the port must be equal; longer (more specific) keys are tried first.
//! An entry's `auth` (base64 `user:password`) wins over `username` and
//! `password`.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::images::reference::{Reference, DEFAULT_REGISTRY};

pub const TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
pub const KEY_DOCKER_CONFIG_JSON: &str = ".dockerconfigjson";
pub const KEY_DOCKERCFG: &str = ".dockercfg";

/// A user name and password for a registry (or its token service).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({:?}, <password>)", self.username)
    }
}

/// Why a secret's docker config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("secret {0:?} has no {1} key")]
    MissingKey(String, &'static str),
    #[error("secret {0:?}: {1}")]
    Invalid(String, String),
}

#[derive(Debug, Default, Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The credentials of a pod's pull secrets, by registry key.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    /// (normalised key, credential), most specific key first.
    entries: Vec<(String, Credential)>,
}

impl Keyring {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a pull secret's entries; other secret types are an error (kubelet
    /// ignores them the same way, with a log line).
    pub fn add_secret(&mut self, secret: &Secret) -> Result<(), KeyringError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = secret.data.as_ref();
        let get = |key: &'static str| {
            data.and_then(|d| d.get(key))
                .map(|b| b.0.as_slice())
                .ok_or_else(|| KeyringError::MissingKey(name.clone(), key))
        };
        let invalid = |e: String| KeyringError::Invalid(name.clone(), e);
        match secret.type_.as_deref() {
            Some(TYPE_DOCKER_CONFIG_JSON) => {
                let c: ConfigJson = serde_json::from_slice(get(KEY_DOCKER_CONFIG_JSON)?)
                    .map_err(|e| invalid(e.to_string()))?;
                self.add(c.auths).map_err(invalid)
            }
            Some(TYPE_DOCKERCFG) => {
                let c: BTreeMap<String, Entry> = serde_json::from_slice(get(KEY_DOCKERCFG)?)
                    .map_err(|e| invalid(e.to_string()))?;
                self.add(c).map_err(invalid)
            }
            other => Err(invalid(format!(
                "type {:?} is not {TYPE_DOCKER_CONFIG_JSON} or {TYPE_DOCKERCFG}",
                other.unwrap_or("")
            ))),
        }
    }

    /// Adds a docker config file's content (`{"auths": …}`, as
    /// `~/.docker/config.json`).
    pub fn add_config_json(&mut self, bytes: &[u8]) -> Result<(), String> {
        let c: ConfigJson = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        self.add(c.auths)
    }

    fn add(&mut self, auths: BTreeMap<String, Entry>) -> Result<(), String> {
        for (key, e) in auths {
            let mut cred = Credential {
                username: e.username.unwrap_or_default(),
                password: e.password.unwrap_or_default(),
            };
            if let Some(auth) = e.auth.filter(|a| !a.is_empty()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("{key}: auth is not base64: {e}"))?;
                let text =
                    String::from_utf8(raw).map_err(|_| format!("{key}: auth is not UTF-8"))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| format!("{key}: auth is not user:password"))?;
                cred = Credential {
                    username: u.to_string(),
                    password: p.to_string(),
                };
            }
            let key = normalise_key(&key);
            if !key.is_empty() && !self.entries.contains(&(key.clone(), cred.clone())) {
                self.entries.push((key, cred));
            }
        }
        // Reverse order puts longer (more specific) keys first, as upstream.
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(())
    }

    /// The credentials that apply to an image, best first.
    pub fn lookup(&self, r: &Reference) -> Vec<Credential> {
        let target = r.name();
        let mut out: Vec<Credential> = self
            .entries
            .iter()
            .filter(|(k, _)| matches(k, &target))
            .map(|(_, c)| c.clone())
            .collect();
        if out.is_empty() && r.registry == DEFAULT_REGISTRY {
            // Docker's own config names the default registry by its legacy
            // index host, a sub-domain of the normalised name.
            let suffix = format!(".{DEFAULT_REGISTRY}");
            out = self
                .entries
                .iter()
                .filter(|(k, _)| !k.contains('/') && k.ends_with(&suffix))
                .map(|(_, c)| c.clone())
                .collect();
        }
        out
    }
}

/// `https://host:port/v1/` → `host:port`; `host/path` stays.
fn normalise_key(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (k, String::new()),
    };
    let path = path
        .strip_prefix("/v1")
        .or_else(|| path.strip_prefix("/v2"))
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .map(str::to_string)
        .unwrap_or(path);
    let path = path.trim_end_matches('/');
    format!("{}{path}", host.to_ascii_lowercase())
}

/// Upstream's URLsMatch: same port, same number of host labels each
/// matching as a glob, and the key's path a prefix of the image's.
fn matches(key: &str, target: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        match s.split_once('/') {
            Some((h, p)) => (h.to_string(), format!("/{p}")),
            None => (s.to_string(), String::new()),
        }
    };
    let (khost, kpath) = split(key);
    let (thost, tpath) = split(target);
    let host_port = |h: &str| -> (String, String) {
        match h.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), p.to_string()),
            _ => (h.to_string(), String::new()),
        }
    };
    let (kh, kp) = host_port(&khost);
    let (th, tp) = host_port(&thost);
    if kp != tp {
        return false;
    }
    let kl: Vec<&str> = kh.split('.').collect();
    let tl: Vec<&str> = th.split('.').collect();
    kl.len() == tl.len()
        && kl
            .iter()
            .zip(&tl)
            .all(|(g, t)| glob(g.as_bytes(), t.as_bytes()))
        && tpath.starts_with(&kpath)
}

/// `*` (any run) and `?` (one character) within one host label.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, json: &str) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some([(key.to_string(), ByteString(json.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    fn users(k: &Keyring, image: &str) -> Vec<String> {
        k.lookup(&Reference::parse(image).unwrap())
            .into_iter()
            .map(|c| format!("{}:{}", c.username, c.password))
            .collect()
    }

    #[test]
    fn dockerconfigjson_auth_wins_over_fields() {
        // base64("alice:s3cr:et")
        let mut k = Keyring::default();
        k.add_secret(&secret(
            TYPE_DOCKER_CONFIG_JSON,
            KEY_DOCKER_CONFIG_JSON,
            r#"{"auths": {
                "https://127.0.0.1:5000/v2/": {"auth": "YWxpY2U6czNjcjpldA==", "username": "x", "password": "y"},
                "registry.example": {"username": "bob", "password": "pw"}
            }}"#,
        ))
        .unwrap();
        assert_eq!(
            users(&k, "127.0.0.1:5000/busybox:latest"),
            ["alice:s3cr:et"]
        );
        assert_eq!(users(&k, "registry.example/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000"), ["bob:pw"]);
        // The port must match; a bare host is not host:port.
        assert!(users(&k, "127.0.0.1:5001/busybox").is_empty());
        assert!(users(&k, "registry.example:443/a").is_empty());
        assert!(users(&k, "other.example/a").is_empty());
    }

    #[test]
    fn dockercfg_globs_paths_and_order() {
        let mut k = Keyring::default();
        k.add_secret(&secret(
            TYPE_DOCKERCFG,
            KEY_DOCKERCFG,
            r#"{
                "*.example.org": {"username": "any", "password": "1"},
                "r.example.org/team": {"username": "team", "password": "2"}
            }"#,
        ))
        .unwrap();
        assert_eq!(users(&k, "r.example.org/team/app"), ["team:2", "any:1"]);
        assert_eq!(users(&k, "r.example.org/other"), ["any:1"]);
        // A glob stands for one label only.
        assert!(users(&k, "a.b.example.org/x").is_empty());
        assert!(users(&k, "example.org/x").is_empty());
    }

    #[test]
    fn default_registry_and_bad_secrets() {
        let mut k = Keyring::default();
        let legacy = format!("https://hub.{DEFAULT_REGISTRY}/v1/");
        k.add_config_json(
            format!(r#"{{"auths": {{"{legacy}": {{"username": "hub", "password": "p"}}}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(users(&k, "busybox"), ["hub:p"]);
        assert!(users(&k, "localhost:5000/busybox").is_empty());

        let mut k = Keyring::default();
        let bad = [
            secret("Opaque", KEY_DOCKERCFG, "{}"),
            secret(TYPE_DOCKER_CONFIG_JSON, KEY_DOCKERCFG, "{}"),
            secret(TYPE_DOCKER_CONFIG_JSON, KEY_DOCKER_CONFIG_JSON, "not json"),
            secret(
                TYPE_DOCKER_CONFIG_JSON,
                KEY_DOCKER_CONFIG_JSON,
                r#"{"auths": {"h": {"auth": "%%%"}}}"#,
            ),
            secret(
                TYPE_DOCKER_CONFIG_JSON,
                KEY_DOCKER_CONFIG_JSON,
                r#"{"auths": {"h": {"auth": "bm9jb2xvbg=="}}}"#, // "nocolon"
            ),
        ];
        for s in &bad {
            assert!(k.add_secret(s).is_err(), "{s:?}");
        }
        assert!(k.is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbc"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(!glob(b"abc", b"abcd"));
    }
}
