//! HTTP for registries: one hyper client (HTTP/1.1, plain TCP or rustls
//! with ring and the system's CA roots: the stack kube's client already
//! builds) shared by every pull; plain HTTP or HTTPS per registry (HTTP
//! for loopback registries and those named insecure, as Docker does);
//! and bounds on everything: a connect timeout, a timeout until the
//! response head, an idle timeout between body chunks, a size cap on
//! bodies read into memory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::error::{chain, RegistryError};

/// Request bodies: registries get small JSON or whole blobs (pushes in tests).
pub type Body = Full<Bytes>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How the node reaches registries (`skiff agent` flags).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host:port` or `host`) spoken to over plain HTTP, besides
    /// loopback ones (`--insecure-registry`).
    pub insecure: Vec<String>,
    /// Registry name → endpoint to pull its images from instead
    /// (`host[:port]`, or a URL with its scheme), e.g. for a mirror, or for
    /// the default registry, whose API lives at a host of its own
    /// (`--registry-mirror NAME=ENDPOINT`).
    pub mirrors: BTreeMap<String, String>,
    /// Until a response's head arrives (and for a whole small body).
    pub request_timeout: Duration,
    /// Between two chunks of a streamed body.
    pub idle_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            mirrors: BTreeMap::new(),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The shared HTTP client and the registry settings.
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    config: Arc<RegistryConfig>,
}

impl Transport {
    pub fn new(config: RegistryConfig) -> Result<Transport, RegistryError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "loading the system's CA certificates");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            tracing::warn!("no CA certificates found on this system: pulls over HTTPS will fail");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(https);
        Ok(Transport {
            client,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// `scheme://host[:port]` of the API for a registry name.
    pub fn endpoint(&self, registry: &str) -> String {
        let target = self
            .config
            .mirrors
            .get(registry)
            .map(String::as_str)
            .unwrap_or(registry)
            .trim_end_matches('/');
        if target.starts_with("http://") || target.starts_with("https://") {
            return target.to_string();
        }
        let scheme = if self.is_insecure(target) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{target}")
    }

    /// Plain HTTP: loopback names and addresses, and what the flags list.
    pub fn is_insecure(&self, host_port: &str) -> bool {
        let host = host_of(host_port);
        host == "localhost"
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self
                .config
                .insecure
                .iter()
                .any(|i| i == host_port || i == host)
    }

    /// Sends a request; the response head must come within the timeout.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, RegistryError> {
        let url = req.uri().to_string();
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(RegistryError::Timeout {
                url,
                secs: timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(RegistryError::Transport {
                url,
                message: chain(&e),
            }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// A response body, chunk by chunk.
    pub fn chunks(&self, url: &str, body: Incoming) -> Chunks {
        Chunks {
            body,
            idle: self.config.idle_timeout,
            url: url.to_string(),
        }
    }

    /// Reads a whole body of at most `max` bytes within the request timeout.
    pub async fn read_body(
        &self,
        url: &str,
        body: Incoming,
        max: u64,
        what: &str,
    ) -> Result<Bytes, RegistryError> {
        let mut chunks = self.chunks(url, body);
        let read = async {
            let mut out = Vec::new();
            while let Some(c) = chunks.next().await? {
                if (out.len() + c.len()) as u64 > max {
                    return Err(RegistryError::TooLarge {
                        what: what.to_string(),
                        max,
                    });
                }
                out.extend_from_slice(&c);
            }
            Ok(Bytes::from(out))
        };
        let timeout = self.config.request_timeout;
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| RegistryError::Timeout {
                url: url.to_string(),
                secs: timeout.as_secs(),
            })?
    }
}

/// A response body read chunk by chunk, each within the idle timeout.
pub struct Chunks {
    body: Incoming,
    idle: Duration,
    url: String,
}

impl Chunks {
    /// The next chunk of data; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, RegistryError> {
        loop {
            let frame = tokio::time::timeout(self.idle, self.body.frame())
                .await
                .map_err(|_| RegistryError::Timeout {
                    url: self.url.clone(),
                    secs: self.idle.as_secs(),
                })?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(RegistryError::Transport {
                        url: self.url.clone(),
                        message: chain(&e),
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }
}

/// The host of `host[:port]`, IPv6 brackets removed.
pub(crate) fn host_of(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host_port.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h,
        _ => host_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scheme_per_registry() {
        let mut config = RegistryConfig::default();
        config.insecure.push("reg.internal:5000".into());
        config.insecure.push("plain.internal".into());
        config
            .mirrors
            .insert("mirrored.example".into(), "http://127.0.0.2:5000/".into());
        config
            .mirrors
            .insert("other.example".into(), "127.0.0.1:5001".into());
        let t = Transport::new(config).unwrap();
        assert_eq!(t.endpoint("localhost:5000"), "http://localhost:5000");
        assert_eq!(t.endpoint("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(t.endpoint("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(t.endpoint("reg.internal:5000"), "http://reg.internal:5000");
        assert_eq!(t.endpoint("reg.internal:5001"), "https://reg.internal:5001");
        assert_eq!(t.endpoint("plain.internal:1"), "http://plain.internal:1");
        assert_eq!(t.endpoint("registry.example"), "https://registry.example");
        assert_eq!(t.endpoint("mirrored.example"), "http://127.0.0.2:5000");
        assert_eq!(t.endpoint("other.example"), "http://127.0.0.1:5001");
    }
}
