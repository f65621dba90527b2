//! Pulling an image from its registry into the store, as containerd does:
//! resolve the reference (`GET /v2/<repo>/manifests/<tag|digest>`, with
//! the OCI and Docker manifest and index media types accepted), pick this
//! machine's manifest from an index, fetch the config and the layers the
//! store lacks (a few at a time, each verified against its digest while it
//! streams), then tag the name — which unpacks the layers. A lease keeps
//! garbage collection away from the new blobs until the tag holds them.
//!
//! Bounds: manifests of at most 4 MiB, a timeout on every request and
//! between body chunks, a fixed number of redirects and of credentials
//! tried, no retry loops (the caller's back-off retries). Concurrent pulls
//! of one name wait for each other, so a second one finds the blobs the
//! first fetched and downloads nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, StatusCode};
use serde::Deserialize;

use super::digest;
use super::oci::{self, AnyManifest, Descriptor};
use super::pull_blob;
use super::reference::Reference;
use super::registry::session::describe;
use super::registry::{Credential, RegistryConfig, RegistryError, Session, Transport};
use super::{Image, ImageError, ImageStore};

/// Larger manifests are refused (containerd's limit too).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Blobs downloaded at once (containerd's default is 3).
const PARALLEL_BLOBS: usize = 3;
/// Matching credentials tried, in order, before giving up.
const MAX_CREDENTIALS: usize = 8;

/// Every manifest and index type the store can use, best first.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// An image pulled and tagged.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// The pull itself, without waiting for another pull of the same name.
    pub pulling: Duration,
}

/// Pulls images into one store; shared by every pod worker.
pub struct Puller {
    store: ImageStore,
    transport: Transport,
    /// One lock per normalised name being pulled.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

#[derive(Deserialize)]
struct Versions {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
}

impl Puller {
    pub fn new(store: ImageStore, config: RegistryConfig) -> Result<Puller, RegistryError> {
        Ok(Puller {
            store,
            transport: Transport::new(config)?,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, w| w.strong_count() > 0);
        if let Some(l) = locks.get(key).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_string(), Arc::downgrade(&l));
        l
    }

    /// Pulls `image` with the first of `credentials` the registry accepts
    /// (anonymously when there are none), tags it and returns it.
    pub async fn pull(
        &self,
        image: &str,
        credentials: &[Credential],
    ) -> Result<Pulled, RegistryError> {
        let r = Reference::parse(image)?;
        let lock = self.lock_for(&r.to_string());
        let _one_at_a_time = lock.lock().await;
        let started = Instant::now();
        let attempts: Vec<Option<&Credential>> = if credentials.is_empty() {
            vec![None]
        } else {
            credentials.iter().take(MAX_CREDENTIALS).map(Some).collect()
        };
        let mut last = None;
        for cred in attempts {
            match self.pull_as(&r, image, cred).await {
                Ok(image) => {
                    return Ok(Pulled {
                        image,
                        pulling: started.elapsed(),
                    })
                }
                Err(e) if e.is_auth() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Unauthorized(String::new())))
    }

    async fn pull_as(
        &self,
        r: &Reference,
        image: &str,
        cred: Option<&Credential>,
    ) -> Result<Image, RegistryError> {
        let s = Session::new(
            &self.transport,
            &r.registry,
            &r.repository,
            "pull",
            cred.cloned(),
        );
        let store = self.store.clone();
        let _lease = blocking(move || store.lease()).await?;
        let wanted = r
            .digest
            .clone()
            .or_else(|| r.tag.clone())
            .unwrap_or_else(|| super::reference::DEFAULT_TAG.to_string());
        let (top_digest, top) = self
            .manifest(&s, r, &wanted, r.digest.as_deref())
            .await
            .map_err(|e| RegistryError::Resolve {
                reference: r.to_string(),
                source: Box::new(e),
            })?;
        let manifest = match &top.manifests {
            Some(entries) => {
                let platform = oci::host_platform();
                let d = oci::select_manifest(entries, &platform, |_| true).ok_or_else(|| {
                    ImageError::NoMatchingPlatform {
                        digest: top_digest.clone(),
                        platform: platform.to_string(),
                    }
                })?;
                let (_, m) = self.manifest(&s, r, &d.digest, Some(&d.digest)).await?;
                if m.manifests.is_some() {
                    return Err(RegistryError::invalid(
                        format!("manifest {}", d.digest),
                        "an index inside an index",
                    ));
                }
                m
            }
            None => top,
        };
        let config = manifest.config.ok_or_else(|| {
            RegistryError::invalid("manifest", "an image manifest without a config")
        })?;
        let missing: Vec<Descriptor> = std::iter::once(config)
            .chain(manifest.layers.unwrap_or_default())
            .filter(|d| !self.store.has_blob(&d.digest))
            .collect();
        futures::stream::iter(missing)
            .map(|d| {
                let s = &s;
                async move { pull_blob::fetch(&self.store, s, &d).await }
            })
            .buffer_unordered(PARALLEL_BLOBS)
            .try_collect::<()>()
            .await?;
        let (store, name) = (self.store.clone(), image.to_string());
        blocking(move || {
            store.tag(&name, &top_digest)?;
            store
                .resolve(&name)?
                .ok_or_else(|| ImageError::NotFound(name.clone()))
        })
        .await
    }

    /// Fetches a manifest or index by tag or digest, checks it (against
    /// `expect` when pinned) and stores it. Returns its digest.
    async fn manifest(
        &self,
        s: &Session<'_>,
        r: &Reference,
        reference: &str,
        expect: Option<&str>,
    ) -> Result<(String, AnyManifest), RegistryError> {
        if let Some(e) = expect {
            digest::hex_of(e)?;
        }
        let url = s.url(&format!("manifests/{reference}"));
        let resp = s
            .send(
                Method::GET,
                &url,
                &[(ACCEPT, ACCEPT_MANIFESTS)],
                Bytes::new(),
            )
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                let shown = match expect {
                    Some(d) => format!("{}@{d}", r.name()),
                    None => format!("{}:{reference}", r.name()),
                };
                return Err(RegistryError::NotFound(shown));
            }
            status => {
                let detail = describe(s.transport(), &url, resp).await;
                return Err(RegistryError::Status {
                    url,
                    status,
                    detail,
                });
            }
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = self
            .transport
            .read_body(&url, resp.into_body(), MAX_MANIFEST, "manifest")
            .await?;
        let actual = digest::of_bytes(&bytes);
        if let Some(e) = expect {
            if e != actual {
                return Err(ImageError::DigestMismatch {
                    expected: e.to_string(),
                    actual,
                }
                .into());
            }
        }
        let m = parse_manifest(&bytes, &content_type)
            .map_err(|m| RegistryError::invalid(format!("manifest {}:{reference}", r.name()), m))?;
        let (store, d) = (self.store.clone(), actual.clone());
        blocking(move || store.put_blob(&d, &bytes[..])).await?;
        Ok((actual, m))
    }
}

/// An image manifest or index, or why it cannot be used.
pub(crate) fn parse_manifest(bytes: &[u8], content_type: &str) -> Result<AnyManifest, String> {
    let v: Versions = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if v.schema_version == Some(1) || content_type.contains("prettyjws") {
        return Err(
            "a Docker schema 1 manifest, which is not supported (push the image again with a current tool)"
                .into(),
        );
    }
    let m: AnyManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match (&m.manifests, &m.config) {
        (Some(_), None) | (None, Some(_)) => Ok(m),
        (Some(_), Some(_)) => Err("both an index and an image manifest".into()),
        (None, None) => Err("neither an image manifest nor an index".into()),
    }
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::invalid("store task", e.to_string()))?
        .map_err(RegistryError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_indexes() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,
            "platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let m = parse_manifest(index, oci::MEDIA_OCI_INDEX).unwrap();
        assert_eq!(m.manifests.map(|m| m.len()), Some(1));
        let manifest =
            br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:bb","size":2},
            "layers":[{"mediaType":"y","digest":"sha256:cc","size":3}]}"#;
        let m = parse_manifest(manifest, "").unwrap();
        assert_eq!(m.config.map(|c| c.size), Some(2));
        assert_eq!(m.layers.map(|l| l.len()), Some(1));
        let v1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(parse_manifest(v1, "application/json")
            .unwrap_err()
            .contains("schema 1"));
        assert!(parse_manifest(b"{}", "").is_err());
        assert!(parse_manifest(b"[", "").is_err());
        assert!(parse_manifest(br#"{"schemaVersion":2,"manifests":[],"config":{"mediaType":"x","digest":"sha256:bb","size":2}}"#, "").is_err());
    }
}
