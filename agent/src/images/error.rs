//! The image store's one error type, and a helper that names the path an
//! I/O error happened at (a bare "No such file or directory" helps nobody).

use std::io;
use std::path::{Path, PathBuf};

use super::reference::ReferenceError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("invalid digest {0:?} (want sha256:<64 hex digits>)")]
    InvalidDigest(String),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid image: {0}")]
    InvalidImage(String),
    #[error("unsupported archive: {0}")]
    UnsupportedArchive(String),
    #[error("image index {digest} has no manifest for {platform}")]
    NoMatchingPlatform { digest: String, platform: String },
    #[error("layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("layer {digest}: {source}")]
    Layer {
        digest: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("{0:?} matches more than one image")]
    Ambiguous(String),
}

/// Attaches the path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
