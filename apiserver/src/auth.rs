//! Authentication: client certificates signed by the cluster CA (CN = user,
//! O = groups), the admin's bearer token, or a service account's token
//! (`crate::serviceaccount_token`); anything else is 401. Authorization
//! is `crate::authz`'s.

use http::HeaderMap;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    /// Set for service accounts (the account's uid), as upstream.
    pub uid: Option<String>,
    pub groups: Vec<String>,
    /// What else the credential says (upstream's `extra`: for a service
    /// account token, its id and the pod and node it is bound to).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

pub struct Authenticator {
    /// Bearer tokens accepted for the admin (the server's `--token`).
    admin_tokens: Vec<String>,
}

impl Authenticator {
    pub fn new(admin_tokens: Vec<String>) -> Self {
        Self {
            admin_tokens: admin_tokens.into_iter().filter(|t| !t.is_empty()).collect(),
        }
    }

    pub fn authenticate(&self, cert_user: Option<&User>, headers: &HeaderMap) -> Option<User> {
        if let Some(u) = cert_user {
            return Some(u.clone());
        }
        self.admin(bearer(headers)?)
    }

    /// The admin, if `token` is one of the admin's tokens.
    pub fn admin(&self, token: &str) -> Option<User> {
        self.admin_tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .then(|| User {
                name: "system:admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                ..User::default()
            })
    }
}

/// The request's bearer token, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The user a verified client certificate names.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    groups.push("system:authenticated".into());
    Some(User {
        name,
        groups,
        ..User::default()
    })
}
