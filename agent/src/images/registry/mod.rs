//! Talking to OCI / Docker registries (the distribution API, "Docker
//! Registry HTTP API V2"): the HTTP transport and its bounds, the auth
//! challenge and token flow, credentials from pull secrets. What is done
//! with it — pulling an image into the store — is `images::pull`.

pub mod challenge;
mod error;
pub mod keyring;
pub mod session;
pub mod transport;

pub use error::RegistryError;
pub use keyring::{Credential, Keyring, KeyringError};
pub use session::Session;
pub use transport::{RegistryConfig, Transport};
