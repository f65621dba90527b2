//! Strategic merge patch (`application/strategic-merge-patch+json`, what
//! `kubectl apply` sends), after upstream's apimachinery
//! `pkg/util/strategicpatch`.
//!
//! Like a JSON merge patch, except that lists tagged with a merge strategy are
//! merged element by element (by their merge key), and the patch may carry
//! directives: `$patch` (replace/delete a map or list element, replace a
//! list), `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`. The directives never reach the result.
//!
//! - `schema`: which fields of which built-in kinds carry a merge strategy;
//! - `merge`: the walker over maps and lists;
//! - `order`: the order of merged lists;
//! - `json_merge`: RFC 7386, for kinds without a schema (custom resources).

mod json_merge;
mod merge;
mod order;
mod schema;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

/// Error for a patch that cannot be applied (maps to HTTP 422/400 upstream).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn invalid(msg: impl Into<String>) -> PatchError {
    PatchError::Invalid(msg.into())
}

/// Apply a strategic merge patch to `original` (a full object JSON of the given kind,
/// e.g. kind "Deployment" with apiVersion "apps/v1"). Returns the patched object.
///
/// Kinds unknown to the schema (custom resources) get JSON merge patch
/// semantics, as upstream falls back to: lists are replaced wholesale.
pub fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let empty = Map::new();
    let patch = match patch {
        Value::Object(p) => p,
        // Upstream decodes `null` as an empty patch.
        Value::Null => &empty,
        _ => {
            return Err(invalid(
                "invalid JSON document: a patch must be a JSON object",
            ))
        }
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(invalid(
                "invalid JSON document: the object must be a JSON object",
            ))
        }
    };
    match schema::root_type(kind) {
        Some(root) => merge::merge_map(&schema::BUILTIN, original, patch.clone(), Some(root))
            .map(Value::Object),
        None => {
            let mut target = Value::Object(original);
            json_merge::merge(&mut target, &Value::Object(patch.clone()));
            Ok(target)
        }
    }
}

/// How a field is patched, as published in OpenAPI (`x-kubernetes-patch-strategy`
/// and `x-kubernetes-patch-merge-key`), which kubectl reads to build its patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldPatch {
    /// No tag: maps merge, lists are replaced.
    Default,
    /// Lists merged by this key ("" for a set of primitives).
    Merge(&'static str),
    /// Replaced whole.
    Replace,
}

/// The patch-metadata type at the root of a built-in kind.
pub fn root_type(kind: &str) -> Option<&'static str> {
    schema::root_type(kind)
}

/// The type of `field` inside a value of type `ty`, and how it is patched.
pub fn field_patch(ty: &'static str, field: &str) -> (Option<&'static str>, FieldPatch) {
    let (child, strategy) = schema::BUILTIN.field(Some(ty), field);
    let fp = match strategy {
        schema::Strategy::Default => FieldPatch::Default,
        schema::Strategy::Merge(k) => FieldPatch::Merge(k),
        schema::Strategy::Replace => FieldPatch::Replace,
    };
    (child, fp)
}
