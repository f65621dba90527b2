//! Joining a cluster with a token (`skiff agent --server URL --token T`), as
//! k3s's agents do: the token `K10<sha256 of the CA PEM>::server:<secret>`
//! pins the cluster's CA, which is fetched from the server unverified and
//! checked against it; the node's key never leaves it — a certificate signing
//! request with the secret comes back as a client certificate for
//! `system:node:<name>`, written with the CA into the node's kubeconfig.
//! Two thirds into its life the certificate is renewed the same way,
//! authenticated by the certificate itself (no yearly outage).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use skiff_machinery::tls::renew_at;

/// The parts of a join token.
#[derive(Debug, PartialEq, Eq)]
pub struct Token {
    /// Hex SHA-256 of the CA certificate PEM; None for a bare secret (the
    /// CA is then trusted on first use).
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl Token {
    pub fn parse(token: &str) -> Result<Token> {
        let token = token.trim();
        if token.is_empty() {
            bail!("the token is empty");
        }
        let Some(rest) = token.strip_prefix("K10") else {
            return Ok(Token {
                ca_hash: None,
                secret: token.to_string(),
            });
        };
        let (hash, cred) = rest
            .split_once("::")
            .context("a K10 token is K10<ca hash>::<user>:<secret>")?;
        let secret = cred.split_once(':').map_or(cred, |(_, s)| s);
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) || secret.is_empty() {
            bail!("a K10 token is K10<ca hash>::<user>:<secret>");
        }
        Ok(Token {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret: secret.to_string(),
        })
    }
}

/// Where the node's kubeconfig is kept.
pub fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("node.kubeconfig")
}

/// The node's kubeconfig for `server`: the one kept from an earlier join,
/// else a new one made with `token`.
pub async fn kubeconfig(server: &str, token: &str, node: &str, data_dir: &Path) -> Result<PathBuf> {
    let path = kubeconfig_path(data_dir);
    if let Ok(kc) = kube::config::Kubeconfig::read_from(&path) {
        let same = kc.clusters.iter().any(|c| {
            c.cluster
                .as_ref()
                .and_then(|c| c.server.as_deref())
                .is_some_and(|s| s == server)
        });
        if same {
            return Ok(path);
        }
    }
    let token = Token::parse(token)?;
    let ca = fetch_ca(server, token.ca_hash.as_deref()).await?;
    let (cert, key) = certificate(server, &ca, node, Credential::Secret(&token.secret)).await?;
    write_kubeconfig(&path, server, &ca, &cert, &key)?;
    tracing::info!(node, server, "joined the cluster");
    Ok(path)
}

/// How a certificate request proves it may be made.
enum Credential<'a> {
    /// The join secret.
    Secret(&'a str),
    /// The node's current certificate and key (PEM), for a renewal.
    Certificate(&'a str, &'a str),
}

/// A new key and the server's certificate for it (both PEM).
async fn certificate(
    server: &str,
    ca: &str,
    node: &str,
    credential: Credential<'_>,
) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;
    let body = json!({"nodeName": node, "csr": csr}).to_string();
    let (secret, client) = match credential {
        Credential::Secret(s) => (Some(s), None),
        Credential::Certificate(c, k) => (None, Some((c, k))),
    };
    let (status, answer) = request(
        server,
        Some(ca),
        http::Method::POST,
        "/v1-skiff/node-certificate",
        secret,
        client,
        Bytes::from(body),
    )
    .await?;
    if !status.is_success() {
        let why: Value = serde_json::from_slice(&answer).unwrap_or_default();
        bail!(
            "the server refused a certificate for node {node} ({status}): {}",
            why["message"].as_str().unwrap_or("")
        );
    }
    let answer: Value = serde_json::from_slice(&answer).context("the server's answer")?;
    let cert = answer["certificate"]
        .as_str()
        .context("no certificate in the server's answer")?;
    Ok((cert.to_string(), key.serialize_pem()))
}

/// What a node kubeconfig holds, PEM decoded.
struct Kept {
    server: String,
    ca: String,
    cert: String,
    key: String,
}

fn read_kept(path: &Path) -> Result<Kept> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)
        .with_context(|| format!("{} is not a node kubeconfig", path.display()))?;
    let pem = |p: &str| -> Result<String> {
        let b = v
            .pointer(p)
            .and_then(Value::as_str)
            .with_context(|| format!("{}: no {p}", path.display()))?;
        Ok(String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(b)?,
        )?)
    };
    Ok(Kept {
        server: v
            .pointer("/clusters/0/cluster/server")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ca: pem("/clusters/0/cluster/certificate-authority-data")?,
        cert: pem("/users/0/user/client-certificate-data")?,
        key: pem("/users/0/user/client-key-data")?,
    })
}

/// The validity (Unix seconds) of the first certificate in `pem`.
fn validity(pem: &str) -> Result<(i64, i64)> {
    skiff_machinery::tls::validity(pem).map_err(anyhow::Error::msg)
}

/// Renews the certificate in the node kubeconfig at `path` now, with the
/// certificate itself as the credential; the kubeconfig is rewritten.
pub async fn renew(path: &Path, node: &str) -> Result<()> {
    let kept = read_kept(path)?;
    let (cert, key) = certificate(
        &kept.server,
        &kept.ca,
        node,
        Credential::Certificate(&kept.cert, &kept.key),
    )
    .await?;
    write_kubeconfig(path, &kept.server, &kept.ca, &cert, &key)?;
    let (_, until) = validity(&cert)?;
    tracing::info!(node, valid_until = until, "node certificate renewed");
    Ok(())
}

/// Returns at `at` (Unix seconds) by the wall clock, which is looked at
/// again at least hourly (a clock may jump, a machine may sleep).
pub async fn wake_at(at: i64) {
    loop {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        if now >= at {
            return;
        }
        let wait = (at - now).clamp(1, 3600) as u64;
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    }
}

/// Waits until the certificate at `path` is due, renews it (retrying each
/// minute while the server refuses or is away) and returns: the caller
/// starts again with the new one.
pub async fn renew_when_due(path: &Path, node: &str) -> Result<()> {
    let (from, until) = validity(&read_kept(path)?.cert)?;
    wake_at(renew_at(from, until)).await;
    loop {
        match renew(path, node).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(node, error = %e, "node certificate renewal failed; retrying in a minute");
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            }
        }
    }
}

/// The cluster CA from `/cacerts`, fetched without verification and checked
/// against the token's hash.
async fn fetch_ca(server: &str, hash: Option<&str>) -> Result<String> {
    let (status, body) = request(
        server,
        None,
        http::Method::GET,
        "/cacerts",
        None,
        None,
        Bytes::new(),
    )
    .await
    .with_context(|| format!("fetching the cluster CA from {server}"))?;
    if !status.is_success() {
        bail!("fetching the cluster CA from {server}: {status}");
    }
    let pem = String::from_utf8(body.to_vec()).context("the cluster CA is not PEM")?;
    let got: String = Sha256::digest(pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match hash {
        Some(want) if want != got => bail!(
            "the server's CA does not match the token (its hash is {got}): not joining"
        ),
        Some(_) => {}
        None => tracing::warn!(
            "a bare token pins no CA: trusting the server's CA on first use (use the K10 token from the server's node-token file)"
        ),
    }
    Ok(pem)
}

/// One HTTPS request to `server`; `ca` None accepts any server certificate.
async fn request(
    server: &str,
    ca: Option<&str>,
    method: http::Method,
    path: &str,
    bearer: Option<&str>,
    client: Option<(&str, &str)>,
    body: Bytes,
) -> Result<(http::StatusCode, Bytes)> {
    let uri: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server:?}"))?;
    if uri.scheme_str() != Some("https") {
        bail!("--server {server:?}: must be https://HOST[:PORT]");
    }
    let host = uri.host().context("--server has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut cfg = match ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert?)?;
            }
            let builder = builder.with_root_certificates(roots);
            match client {
                Some((cert, key)) => builder.with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>()?,
                    rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())?,
                )?,
                None => builder.with_no_client_auth(),
            }
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(skiff_machinery::tls::AnyServer::new(
                provider,
            )))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let name = ServerName::try_from(host.clone())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {host}:{port}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(secret) = bearer {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {secret}"));
    }
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        sender.send_request(req.body(Full::new(body))?),
    )
    .await
    .context("no answer from the server")??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn write_kubeconfig(path: &Path, server: &str, ca: &str, cert: &str, key: &str) -> Result<()> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": "node", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "node"}}],
        "current-context": "skiff",
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(serde_json::to_string_pretty(&kc)?.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_two_thirds_in() {
        assert_eq!(renew_at(0, 300), 200);
        let year = 365 * 86400;
        assert_eq!(renew_at(1_000, 1_000 + year), 1_000 + year * 2 / 3);
    }

    #[test]
    fn tokens() {
        let hash = "ab".repeat(32);
        assert_eq!(
            Token::parse(&format!("K10{hash}::server:s3cret")).unwrap(),
            Token {
                ca_hash: Some(hash.clone()),
                secret: "s3cret".into()
            }
        );
        assert_eq!(
            Token::parse("plain").unwrap(),
            Token {
                ca_hash: None,
                secret: "plain".into()
            }
        );
        assert!(Token::parse("K10short::server:x").is_err());
        assert!(Token::parse(&format!("K10{hash}::server:")).is_err());
        assert!(Token::parse("  ").is_err());
    }
}
