//! The API server's connections to node agents (kubelet's port), for the
//! pods' log, exec, attach and portforward subresources: HTTP/1.1 over
//! TLS with the API server's kubelet client certificate (CN
//! `kube-apiserver-kubelet-client`, O `system:masters`, issued by the
//! cluster CA at start). Agents' serving certificates are self-signed, so,
//! like upstream's API server without `--kubelet-certificate-authority`,
//! it does not verify them.

use crate::pki::Pki;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use skiff_machinery::tls::AnyServer;
use std::sync::Arc;
use std::time::Duration;

pub const CLIENT_USER: &str = "kube-apiserver-kubelet-client";
pub const CLIENT_GROUP: &str = "system:masters";

/// How long to wait for an agent to accept and answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("dial tcp {addr}: {source}")]
    Dial {
        addr: String,
        source: std::io::Error,
    },
    #[error("dial tcp {0}: i/o timeout")]
    Timeout(String),
    #[error("{0}")]
    Http(String),
}

pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
}

impl KubeletClient {
    pub fn new(pki: &Pki) -> anyhow::Result<Self> {
        let pair = pki.client(CLIENT_USER, &[CLIENT_GROUP])?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(pair.cert_pem.as_bytes())?];
        let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer::new(provider)))
            .with_client_auth_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// Sends `req` to the agent at `host:port` on a connection of its own;
    /// the connection lives as long as the response's body or upgrade.
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        req: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, KubeletError> {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
            .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(source)) => return Err(KubeletError::Dial { addr, source }),
            Err(_) => return Err(KubeletError::Timeout(addr)),
        };
        let _ = tcp.set_nodelay(true);
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string())
                .map_err(|e| KubeletError::Http(format!("bad node address {host:?}: {e}")))?,
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| KubeletError::Timeout(addr.clone()))?
            .map_err(|e| KubeletError::Http(format!("tls handshake with {addr}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| KubeletError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| KubeletError::Http(format!("no answer from {addr}")))?
            .map_err(|e| KubeletError::Http(e.to_string()))
    }
}
