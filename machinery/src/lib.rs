//! What several skiff components share: the resource catalog, label and field
//! selectors, cron schedules, quantities, strategic-merge-patch metadata, field ownership
//! (server-side apply), metrics histograms, CIDRs, JSONPath (CRD printer
//! columns), Go's renderings of values in upstream's messages, and running
//! the node's network tools.

pub mod catalog;
pub mod cidr;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod command;
pub mod cron;
pub mod fields;
pub mod gofmt;
pub mod histogram;
pub mod jsonpath;
pub mod labels;
pub mod managed_fields;
pub mod names;
#[cfg(feature = "client")]
pub mod plain_http;
pub mod quantity;
pub mod quota;
pub mod strategic_merge;
#[cfg(feature = "tls")]
pub mod tls;
