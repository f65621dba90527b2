//! What several skiff components share: the resource catalog, label and field
//! selectors, cron schedules, quantities, strategic-merge-patch metadata, field ownership
//! (server-side apply) and metrics histograms.

pub mod catalog;
#[cfg(feature = "client")]
pub mod client;
pub mod cron;
pub mod fields;
pub mod histogram;
pub mod labels;
pub mod managed_fields;
pub mod names;
pub mod quantity;
pub mod strategic_merge;
