//! What several skiff components share: the resource catalog, label and field
//! selectors, quantities and strategic-merge-patch metadata.

pub mod catalog;
pub mod fields;
pub mod labels;
pub mod names;
pub mod quantity;
pub mod strategic_merge;
