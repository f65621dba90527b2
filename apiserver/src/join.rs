//! Nodes joining with a token, as k3s's secure tokens: the server keeps a
//! join secret (`--token`, or one made on first start) and writes
//! `<data-dir>/server/node-token` as `K10<sha256 of the CA certificate
//! PEM>::server:<secret>`. An agent fetches `/cacerts` unverified, checks it
//! against the hash in its token, then posts a certificate signing request
//! to `/v1-skiff/node-certificate` with the secret as a bearer token and gets
//! back a client certificate as `system:node:<name>` (group system:nodes).
//! A node renews its certificate there the same way, authenticated by its
//! current certificate instead of the secret.

use std::path::Path;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::{constant_time_eq, User};
use crate::error::ApiError;
use crate::http::output::value_response;
use crate::pki::Pki;
use axum::response::{IntoResponse, Response};

pub const CACERTS_PATH: &str = "/cacerts";
pub const NODE_CERTIFICATE_PATH: &str = "/v1-skiff/node-certificate";

pub struct Join {
    secret: String,
    pki: Pki,
}

/// The token an agent joins with: the CA's hash and the secret.
pub fn node_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", hex(&Sha256::digest(ca_pem)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// The join secret: `given` (the server's --token), else the one kept in
/// `<server_dir>/token`, else a new one; kept there for the next start.
pub fn secret(server_dir: &Path, given: Option<&str>) -> anyhow::Result<String> {
    let kept = server_dir.join("token");
    let secret = match given.filter(|t| !t.is_empty()) {
        Some(t) => t.to_string(),
        None => match std::fs::read_to_string(&kept) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => random_secret(),
        },
    };
    std::fs::create_dir_all(server_dir)?;
    crate::pki::write_private(&kept, &format!("{secret}\n"))?;
    Ok(secret)
}

impl Join {
    /// The join secret: `given`, else the one kept in `server_dir/token`
    /// (made on first start); writes `server_dir/node-token`.
    pub fn load(server_dir: &Path, pki: &Pki, given: Option<&str>) -> anyhow::Result<Join> {
        let secret = secret(server_dir, given)?;
        crate::pki::write_private(
            &server_dir.join("node-token"),
            &format!("{}\n", node_token(&pki.ca_cert_pem, &secret)),
        )?;
        Ok(Join {
            secret,
            pki: pki.clone(),
        })
    }

    /// Serves the join paths (before authentication: they check the secret
    /// or the node's own certificate); every other request is handed back.
    pub async fn serve(
        &self,
        req: http::Request<Incoming>,
        cert_user: Option<&User>,
    ) -> Result<Response, http::Request<Incoming>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, CACERTS_PATH) => Ok((
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, "application/x-pem-file")],
                self.pki.ca_cert_pem.clone(),
            )
                .into_response()),
            (&Method::POST, NODE_CERTIFICATE_PATH) => Ok(self
                .node_certificate(req, cert_user)
                .await
                .unwrap_or_else(|e| e.into_response())),
            _ => Err(req),
        }
    }

    async fn node_certificate(
        &self,
        req: http::Request<Incoming>,
        cert_user: Option<&User>,
    ) -> Result<Response, ApiError> {
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let with_secret =
            bearer.is_some_and(|t| constant_time_eq(t.as_bytes(), self.secret.as_bytes()));
        let renewing = cert_user.and_then(|u| u.name.strip_prefix("system:node:"));
        if !with_secret && renewing.is_none() {
            return Err(ApiError::unauthorized());
        }
        let body: Bytes = http_body_util::Limited::new(req.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|_| ApiError::bad_request("the request body is too large or unreadable"))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?;
        let (Some(node), Some(csr)) = (
            v.get("nodeName").and_then(Value::as_str),
            v.get("csr").and_then(Value::as_str),
        ) else {
            return Err(ApiError::bad_request("nodeName and csr are required"));
        };
        if node.is_empty()
            || node.len() > 253
            || !node
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(ApiError::bad_request(format!(
                "nodeName {node:?}: must be a lowercase RFC 1123 subdomain"
            )));
        }
        // A node renews its own certificate, no other's.
        if !with_secret && renewing != Some(node) {
            return Err(ApiError::forbidden(format!(
                "a node may renew only its own certificate, not {node:?}"
            )));
        }
        let certificate = self
            .pki
            .sign_node_csr(csr, node)
            .map_err(|e| ApiError::bad_request(format!("csr: {e}")))?;
        tracing::info!(node, renewal = !with_secret, "node certificate issued");
        Ok(value_response(
            StatusCode::OK,
            &json!({"certificate": certificate, "ca": self.pki.ca_cert_pem}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_the_ca_and_the_secret() {
        let t = node_token("PEM", "s3cret");
        let hash = t.strip_prefix("K10").unwrap().split("::").next().unwrap();
        assert_eq!(hash.len(), 64);
        assert!(t.ends_with("::server:s3cret"));
    }

    #[test]
    fn the_secret_is_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&dir.path().join("tls")).unwrap();
        let first = Join::load(dir.path(), &pki, None).unwrap().secret;
        assert_eq!(first.len(), 32);
        assert_eq!(Join::load(dir.path(), &pki, None).unwrap().secret, first);
        let token = std::fs::read_to_string(dir.path().join("node-token")).unwrap();
        assert_eq!(token.trim(), node_token(&pki.ca_cert_pem, &first));
        assert_eq!(
            Join::load(dir.path(), &pki, Some("given")).unwrap().secret,
            "given"
        );
    }
}
