//! The node's image store: image references, a content-addressed blob
//! store, layers unpacked once as overlayfs lowerdirs, import of OCI
//! layout and `docker save` tarballs, and pulls from registries. The store
//! blocks on the file system: async callers run it in
//! `tokio::task::spawn_blocking`; pulls (`pull`, `registry`) are async.

pub mod autoimport;
mod compression;
pub mod digest;
mod error;
mod fsutil;
mod import;
pub mod oci;
pub mod pull;
mod pull_blob;
pub mod reference;
pub mod registry;
mod store;
#[cfg(test)]
mod store_tests;
pub mod testimage;
#[cfg(test)]
mod testutil;
pub mod unpack;

pub use error::ImageError;
pub use import::ArchiveImport;
pub use pull::{Pulled, Puller};
pub use reference::{Reference, ReferenceError};
pub use store::{Image, ImageConfig, ImageStore, ImageSummary, Lease};
