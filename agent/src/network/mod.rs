//! The pod network of the node agent: CNI plugins attach and detach pod
//! sandboxes (`cni`: config in `conf`, plugin runs in `exec`, results in
//! `result`, the ADD record in `cache`), the default config written from
//! the node's podCIDR (`default_conf`), and routing between nodes' pod
//! ranges with masquerade for traffic leaving the cluster (`routes`,
//! `masquerade`).

mod atomic;
pub mod cache;
pub mod cni;
pub mod conf;
pub mod default_conf;
pub mod error;
pub mod exec;
pub mod masquerade;
pub mod pod;
pub mod result;
pub mod routes;

// Shared with the service proxy.
pub use cni::{Cni, CniConfig, POD_IFNAME};
pub use error::CniError;
pub use pod::{PodNetworkRef, PortMapping};
pub use result::{Attachment, CniResult};
pub use routes::NodeRoutes;
pub use skiff_machinery::cidr::{self, Cidr};
pub use skiff_machinery::command as cmd;
