//! Service account tokens for projected volumes (kubelet's token manager).
//! A token is asked of the API server's TokenRequest
//! (`serviceaccounts/<name>/token`, bound to the pod) once, and kept until
//! 80% of its lifetime or 24 hours have passed: every pod has one in its
//! `kube-api-access-*` volume, and volumes are refreshed every 30 s.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a projected serviceAccountToken comes from; the auth work can
/// swap in another source.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration: Option<i64>,
    ) -> Result<String, String>;
}

/// The lifetime a projection asks for when it names none (upstream's).
const DEFAULT_EXPIRATION: i64 = 3600;
/// The longest a token is used before a fresh one is asked for.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What a token was asked for: upstream's cache key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    service_account: String,
    pod_uid: String,
    audience: Option<String>,
    expiration: i64,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Tokens from TokenRequest, kept until due for refresh.
pub struct TokenRequest {
    client: kube::Client,
    cache: Mutex<HashMap<Key, Cached>>,
}

impl TokenRequest {
    pub fn new(client: kube::Client) -> Self {
        TokenRequest {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn request(&self, pod: &Pod, key: &Key) -> Result<String, String> {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {
                "audiences": key.audience.iter().collect::<Vec<_>>(),
                "expirationSeconds": key.expiration,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "uid": key.pod_uid},
            },
        });
        let req = http::Request::post(format!(
            "/api/v1/namespaces/{}/serviceaccounts/{}/token",
            key.namespace, key.service_account
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
        let resp: serde_json::Value = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("requesting a service account token: {e}"))?;
        resp.pointer("/status/token")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| "the token request returned no token".into())
    }
}

/// When a token fetched now for `expiration` seconds is due for refresh.
fn refresh_at(now: Instant, expiration: i64) -> Instant {
    let ttl = Duration::from_secs(expiration.max(0) as u64);
    now + (ttl * 4 / 5).min(MAX_AGE)
}

#[async_trait::async_trait]
impl TokenSource for TokenRequest {
    async fn token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration: Option<i64>,
    ) -> Result<String, String> {
        let key = Key {
            namespace: pod.namespace().unwrap_or_default(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
            pod_uid: pod.uid().unwrap_or_default(),
            audience: audience.filter(|a| !a.is_empty()).map(str::to_string),
            expiration: expiration.unwrap_or(DEFAULT_EXPIRATION),
        };
        let now = Instant::now();
        if let Some(c) = self.cache.lock().unwrap().get(&key) {
            if c.refresh_at > now {
                return Ok(c.token.clone());
            }
        }
        let token = self.request(pod, &key).await?;
        let mut cache = self.cache.lock().unwrap();
        // Tokens due for refresh are either asked for again or were for pods
        // now gone: dropping them bounds the cache by the pods running.
        cache.retain(|_, c| c.refresh_at > now);
        cache.insert(
            key.clone(),
            Cached {
                token: token.clone(),
                refresh_at: refresh_at(now, key.expiration),
            },
        );
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshed_at_four_fifths_of_the_lifetime_or_after_a_day() {
        let now = Instant::now();
        assert_eq!(refresh_at(now, 3600), now + Duration::from_secs(2880));
        assert_eq!(refresh_at(now, 7 * 24 * 3600), now + MAX_AGE);
    }
}
