//! What can go wrong talking to a registry, worded so a pod's waiting
//! message tells the operator what to fix (containerd's wording where it
//! has one: "not found", "pull access denied").

use http::StatusCode;

use crate::images::{ImageError, ReferenceError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No connection or no complete exchange (refused, DNS, TLS, reset).
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: no answer within {secs}s")]
    Timeout { url: String, secs: u64 },
    /// A status the protocol does not expect, with the registry's own words.
    #[error("{url}: unexpected status {status}{}", fmt_detail(.detail))]
    Status {
        url: String,
        status: StatusCode,
        detail: String,
    },
    /// The name could not be turned into a manifest (containerd's wording).
    #[error("failed to resolve reference {reference:?}: {source}")]
    Resolve {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("{0}: not found")]
    NotFound(String),
    #[error("pull access denied, repository does not exist or may require authorization: {0}")]
    Unauthorized(String),
    #[error("{what} is larger than {max} bytes")]
    TooLarge { what: String, max: u64 },
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    #[error("setting up TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] ImageError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RegistryError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        RegistryError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    /// Whether other credentials might do better (the pull is tried once
    /// per matching credential, as kubelet does).
    pub fn is_auth(&self) -> bool {
        match self {
            RegistryError::Unauthorized(_) => true,
            RegistryError::Resolve { source, .. } => source.is_auth(),
            _ => false,
        }
    }
}

/// An error and its sources on one line (hyper's own Display says only
/// "client error (Connect)").
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}
