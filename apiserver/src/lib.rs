//! The skiff API server: the declarative core that kubectl and every other
//! component talk to.

pub mod auth;
pub mod authz;
pub mod conversion;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod fieldvalidation;
pub mod http;
pub mod join;
pub mod kubelet;
pub mod listsnapshots;
pub mod meta;
pub mod metrics;
pub mod metricsapi;
pub mod openapi;
pub mod pki;
pub mod protobuf;
pub mod registry;
pub mod server;
pub mod serviceaccount_token;
mod shared_ca;
pub mod sharedjson;
pub mod storage;
pub mod tables;
pub mod version;
pub mod watchcache;
