//! The cluster's CA, kept in the datastore sealed with the join secret (the
//! server's `--token`), as k3s keeps its bootstrap data: every server on one
//! datastore (an HA control plane on one etcd) serves and signs with the
//! same CA, so one kubeconfig, one join token and every node certificate
//! work against any of them. The first server to start seals its CA in; the
//! others open it, and refuse to start with another token.

use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

use crate::pki::Pki;
use crate::storage::{Storage, StorageError};

/// Outside /registry: no resource's watch or list sees it.
const KEY: &str = "/skiff/bootstrap/ca";

/// The PKI to serve with: the datastore's CA if it holds one (written into
/// `tls_dir`), else this server's own (made if need be), sealed into it.
pub async fn load(storage: &dyn Storage, tls_dir: &Path, secret: &str) -> anyhow::Result<Pki> {
    for _ in 0..2 {
        if let Some(kv) = storage.get(KEY).await? {
            let (cert, key) = open(&kv.value, secret)?;
            adopt(tls_dir, &cert, &key)?;
            return Pki::load_or_create(tls_dir);
        }
        let pki = Pki::load_or_create(tls_dir)?;
        let sealed = seal(&pki.ca_cert_pem, &pki.ca_key_pem, secret)?;
        match storage.create(KEY, sealed).await {
            Ok(_) => return Ok(pki),
            // Another server sealed its CA first: take that one.
            Err(StorageError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the datastore's CA changed twice while starting")
}

/// Writes the shared CA into `tls_dir` unless it is there already.
fn adopt(tls_dir: &Path, cert: &str, key: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(tls_dir)?;
    let cert_file = tls_dir.join("ca.crt");
    if std::fs::read_to_string(&cert_file).ok().as_deref() == Some(cert) {
        return Ok(());
    }
    if cert_file.exists() {
        tracing::warn!(
            dir = %tls_dir.display(),
            "this server's CA differs from the datastore's: taking the datastore's (certificates it issued before stop working)"
        );
    }
    crate::pki::write_private(&tls_dir.join("ca.key"), key)?;
    std::fs::write(&cert_file, cert)?;
    Ok(())
}

fn sealing_key(secret: &str) -> LessSafeKey {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("skiff bootstrap\0{secret}").as_bytes(),
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, digest.as_ref()).expect("a 32-byte key"))
}

fn seal(cert: &str, key: &str, secret: &str) -> anyhow::Result<Bytes> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow::anyhow!("no randomness for the nonce"))?;
    let mut data = serde_json::to_vec(&json!({"caCert": cert, "caKey": key}))?;
    sealing_key(secret)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| anyhow::anyhow!("sealing the CA failed"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Bytes::from(serde_json::to_vec(&json!({
        "nonce": b64.encode(nonce),
        "sealed": b64.encode(&data),
    }))?))
}

fn open(stored: &[u8], secret: &str) -> anyhow::Result<(String, String)> {
    let outer: serde_json::Value =
        serde_json::from_slice(stored).context("the datastore's sealed CA is not JSON")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let field = |k: &str| -> anyhow::Result<Vec<u8>> {
        Ok(b64.decode(outer[k].as_str().unwrap_or_default())?)
    };
    let nonce: [u8; NONCE_LEN] = field("nonce")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the datastore's sealed CA has a bad nonce"))?;
    let mut data = field("sealed")?;
    let plain = sealing_key(secret)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| {
            anyhow::anyhow!(
                "the datastore holds the CA of a cluster with another token: start this server with that cluster's --token"
            )
        })?;
    let inner: serde_json::Value = serde_json::from_slice(plain)?;
    match (inner["caCert"].as_str(), inner["caKey"].as_str()) {
        (Some(c), Some(k)) => Ok((c.to_string(), k.to_string())),
        _ => bail!("the datastore's sealed CA lacks its certificate or key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_with_one_secret_opens_only_with_it() {
        let sealed = seal("CERT", "KEY", "s3cret").unwrap();
        assert_eq!(
            open(&sealed, "s3cret").unwrap(),
            ("CERT".to_string(), "KEY".to_string())
        );
        let err = open(&sealed, "other").unwrap_err().to_string();
        assert!(err.contains("another token"), "{err}");
        // Two seals of the same CA differ (fresh nonces).
        assert_ne!(sealed, seal("CERT", "KEY", "s3cret").unwrap());
    }
}
