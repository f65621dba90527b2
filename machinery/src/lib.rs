//! What several skiff components share: the resource catalog, label and field
//! selectors, quantities, strategic-merge-patch metadata and field ownership
//! (server-side apply).

pub mod catalog;
pub mod fields;
pub mod labels;
pub mod managed_fields;
pub mod names;
pub mod quantity;
pub mod strategic_merge;
