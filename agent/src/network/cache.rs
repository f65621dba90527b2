//! The per-sandbox record of an ADD: the network config it used, the port
//! mappings it was given and the result it got. DEL and CHECK need all
//! three (the spec's prevResult; portmap removes only the mappings it is
//! told about), and the conf dir may have changed since (libcni's
//! `results/` cache does the same).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::atomic::write_atomic;
use super::error::CniError;
use super::pod::PortMapping;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedAttachment {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    /// The network config list as ADD read it.
    pub config: Value,
    pub port_mappings: Vec<PortMapping>,
    /// The chain's final result.
    pub result: Value,
}

pub const KIND: &str = "skiff-cni-attachment/v1";

/// Where the records live: one file per sandbox and interface.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(dir: PathBuf) -> ResultCache {
        ResultCache { dir }
    }

    /// The record's file; `container_id` has been validated as a plain name.
    pub fn path(&self, container_id: &str, if_name: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{if_name}.json"))
    }

    /// The record, `None` if there is none; a corrupt one is an error the
    /// caller decides about.
    pub async fn load(
        &self,
        container_id: &str,
        if_name: &str,
    ) -> Result<Option<CachedAttachment>, CniError> {
        let path = self.path(container_id, if_name);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cache_err(&path, e)),
        };
        let rec: CachedAttachment =
            serde_json::from_slice(&bytes).map_err(|e| cache_err(&path, e))?;
        if rec.kind != KIND || rec.container_id != container_id {
            return Err(cache_err(&path, "not a record for this sandbox"));
        }
        Ok(Some(rec))
    }

    /// Writes the record whole or not at all (temp file, fsync, rename).
    pub async fn store(&self, rec: &CachedAttachment) -> Result<(), CniError> {
        let path = self.path(&rec.container_id, &rec.if_name);
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| cache_err(&path, e))?;
        write_atomic(&path, bytes)
            .await
            .map_err(|e| cache_err(&path, e))
    }

    /// Forgets the record; a missing one is fine.
    pub async fn remove(&self, container_id: &str, if_name: &str) -> Result<(), CniError> {
        let path = self.path(container_id, if_name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(cache_err(&path, e)),
        }
    }
}

fn cache_err(path: &Path, e: impl std::fmt::Display) -> CniError {
    CniError::Cache {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_loads_and_removes() {
        let dir = std::env::temp_dir().join(format!("skiff-cnicache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = ResultCache::new(dir.join("cache"));
        assert_eq!(cache.load("c1", "eth0").await.unwrap(), None);
        let rec = CachedAttachment {
            kind: KIND.into(),
            container_id: "c1".into(),
            if_name: "eth0".into(),
            config: serde_json::json!({"name": "n"}),
            port_mappings: vec![],
            result: serde_json::json!({"ips": []}),
        };
        cache.store(&rec).await.unwrap();
        assert_eq!(cache.load("c1", "eth0").await.unwrap(), Some(rec));
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("cache")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        cache.remove("c1", "eth0").await.unwrap();
        cache.remove("c1", "eth0").await.unwrap();
        assert_eq!(cache.load("c1", "eth0").await.unwrap(), None);

        std::fs::write(cache.path("c2", "eth0"), "{garbage").unwrap();
        assert!(cache.load("c2", "eth0").await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
