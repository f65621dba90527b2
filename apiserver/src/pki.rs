//! The cluster's certificates: a CA made on first start and kept in the data
//! dir, the API server's serving certificate, and client certificates (CN =
//! user, O = groups) such as the admin's.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    /// Only for sealing into the datastore (shared_ca); never served.
    pub(crate) ca_key_pem: String,
}

pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

pub(crate) fn write_private(path: &Path, data: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data.as_bytes())?;
    Ok(())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let day = |ts: jiff::Timestamp| {
        let d = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(d.year() as i32, d.month() as u8, d.day() as u8)
    };
    let now = jiff::Timestamp::now();
    params.not_before = day(now - jiff::SignedDuration::from_secs(86400));
    params.not_after = day(now + jiff::SignedDuration::from_secs(days * 86400));
}

impl Pki {
    /// Loads the CA from `dir`, or makes one (10 years) on first start.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if cert.exists() && key.exists() {
            return Ok(Pki {
                dir: dir.into(),
                ca_cert_pem: std::fs::read_to_string(cert)?,
                ca_key_pem: std::fs::read_to_string(key)?,
            });
        }
        let key_pair = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("skiff-ca@{}", jiff::Timestamp::now().as_second()),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 3650);
        let ca = params.self_signed(&key_pair)?;
        write_private(&key, &key_pair.serialize_pem())?;
        std::fs::write(&cert, ca.pem())?;
        Ok(Pki {
            dir: dir.into(),
            ca_cert_pem: ca.pem(),
            ca_key_pem: key_pair.serialize_pem(),
        })
    }

    fn issue(&self, params: &mut CertificateParams) -> anyhow::Result<Pair> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        validity(params, 365);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate: CN is the user, each O a group.
    pub fn client(&self, user: &str, groups: &[&str]) -> anyhow::Result<Pair> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for g in groups {
            dn.push(DnType::OrganizationName, *g);
        }
        dn.push(DnType::CommonName, user);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&mut params)
    }

    /// A node's client certificate (`system:node:<node>`, group
    /// `system:nodes`) for the key of a certificate signing request; the
    /// request's own subject and extensions are not used.
    pub fn sign_node_csr(&self, csr_pem: &str, node: &str) -> anyhow::Result<String> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .context("not a certificate signing request")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "system:nodes");
        dn.push(DnType::CommonName, format!("system:node:{node}"));
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, 365);
        csr.params = params;
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        Ok(csr.signed_by(&issuer)?.pem())
    }

    /// The serving certificate for these names and addresses, kept in the data
    /// dir and re-issued when the set of names changes.
    pub fn serving(&self, names: &[String]) -> anyhow::Result<Pair> {
        let (cert_path, key_path, names_path) = (
            self.dir.join("serving.crt"),
            self.dir.join("serving.key"),
            self.dir.join("serving.names"),
        );
        let wanted = names.join(",");
        if cert_path.exists()
            && std::fs::read_to_string(&names_path).ok().as_deref() == Some(wanted.as_str())
        {
            return Ok(Pair {
                cert_pem: std::fs::read_to_string(&cert_path)?,
                key_pem: std::fs::read_to_string(&key_path)?,
            });
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.as_str().try_into()?)),
            })
            .collect::<anyhow::Result<_>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let pair = self.issue(&mut params)?;
        write_private(&key_path, &pair.key_pem)?;
        std::fs::write(&cert_path, &pair.cert_pem)?;
        std::fs::write(&names_path, wanted)?;
        Ok(pair)
    }
}
