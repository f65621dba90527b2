//! Who may talk to the agent's port: TLS with a self-signed serving
//! certificate (made once, kept in `<data>/agent/tls`, as kubelet's own),
//! and client certificates that chain to the cluster CA (taken from the
//! agent's kubeconfig). A verified client is served when it is the API
//! server's kubelet client (`kube-apiserver-kubelet-client`) or in group
//! `system:masters`; any other is forbidden, and one without a certificate
//! unauthorized.

use super::StreamError;
use base64::Engine;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The API server's client identity towards kubelets, as upstream names it.
pub const APISERVER_CLIENT: &str = "kube-apiserver-kubelet-client";
pub const MASTERS: &str = "system:masters";

/// The client of one connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Anonymous,
    User { name: String, groups: Vec<String> },
}

impl Identity {
    /// The user named by a verified client certificate (CN, O = groups).
    pub fn from_certificate(der: &[u8]) -> Identity {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Identity::Anonymous;
        };
        let subject = cert.subject();
        let Some(name) = subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
        else {
            return Identity::Anonymous;
        };
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Identity::User {
            name: name.to_string(),
            groups,
        }
    }

    /// Whether this client may use the streaming endpoints.
    pub fn allowed(&self) -> bool {
        match self {
            Identity::Anonymous => false,
            Identity::User { name, groups } => {
                name == APISERVER_CLIENT || groups.iter().any(|g| g == MASTERS)
            }
        }
    }
}

/// The CA the cluster's certificates chain to, from a kubeconfig (its
/// current context's cluster, else its only one).
pub fn cluster_ca(kubeconfig: &Path) -> Result<String, StreamError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| StreamError::Tls(format!("reading {}: {e}", kubeconfig.display())))?;
    let wanted = kc
        .current_context
        .as_ref()
        .and_then(|c| kc.contexts.iter().find(|n| &n.name == c))
        .and_then(|n| n.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = kc
        .clusters
        .iter()
        .find(|c| wanted.as_ref().is_none_or(|w| &c.name == w))
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| StreamError::Tls("the kubeconfig names no cluster".into()))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| StreamError::Tls(format!("certificate-authority-data: {e}")))?;
        return String::from_utf8(pem)
            .map_err(|_| StreamError::Tls("certificate-authority-data is not PEM".into()));
    }
    if let Some(file) = &cluster.certificate_authority {
        return std::fs::read_to_string(file)
            .map_err(|e| StreamError::Tls(format!("reading {file}: {e}")));
    }
    Err(StreamError::Tls(
        "the kubeconfig has no certificate authority to check clients against".into(),
    ))
}

/// The serving certificate and key (PEM), made on first start and re-made
/// when the names it must carry change.
pub fn serving_pair(
    dir: &Path,
    node: &str,
    names: &[String],
) -> Result<(String, String), StreamError> {
    let io = |what: &str, e: std::io::Error| StreamError::Tls(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| io("creating the tls dir", e))?;
    let (crt, key, list) = (
        dir.join("kubelet.crt"),
        dir.join("kubelet.key"),
        dir.join("kubelet.names"),
    );
    let wanted = names.join(",");
    if crt.exists() && std::fs::read_to_string(&list).ok().as_deref() == Some(wanted.as_str()) {
        if let (Ok(c), Ok(k)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
            return Ok((c, k));
        }
    }
    let tls = |e: rcgen::Error| StreamError::Tls(e.to_string());
    let key_pair = KeyPair::generate().map_err(tls)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(tls)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("{node}@{}", k8s_openapi::jiff::Timestamp::now().as_second()),
    );
    params.distinguished_name = dn;
    let cert = params.self_signed(&key_pair).map_err(tls)?;
    let (c, k) = (cert.pem(), key_pair.serialize_pem());
    write_private(&key, &k).map_err(|e| io("writing the key", e))?;
    std::fs::write(&crt, &c).map_err(|e| io("writing the certificate", e))?;
    std::fs::write(&list, wanted).map_err(|e| io("writing the names", e))?;
    Ok((c, k))
}

fn write_private(path: &Path, data: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data.as_bytes())
}

/// TLS that asks for (but does not require) a client certificate chaining
/// to `client_ca`, so a client without one gets a 401 it can read.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca: &str,
) -> Result<rustls::ServerConfig, StreamError> {
    let tls = |e: &dyn std::fmt::Display| StreamError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| tls(&e))?];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_apiserver_and_masters_are_allowed() {
        let user = |name: &str, groups: &[&str]| Identity::User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert!(user(APISERVER_CLIENT, &[]).allowed());
        assert!(user("system:admin", &[MASTERS]).allowed());
        assert!(!user("system:node:n1", &["system:nodes"]).allowed());
        assert!(!Identity::Anonymous.allowed());
    }

    #[test]
    fn serving_pair_is_kept_until_names_change() {
        let dir = std::env::temp_dir().join(format!("skiff-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = vec!["node-a".to_string(), "10.0.0.1".to_string()];
        let a = serving_pair(&dir, "node-a", &names).unwrap();
        assert_eq!(serving_pair(&dir, "node-a", &names).unwrap(), a);
        assert_ne!(serving_pair(&dir, "node-a", &names[..1]).unwrap(), a);
        server_config(&a.0, &a.1, &a.0).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
