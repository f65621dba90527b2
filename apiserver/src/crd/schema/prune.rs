//! Structural pruning: what the schema does not declare goes, and nulls it
//! can neither take nor default.

use super::{child, Schema, MAX_DEPTH, META_FIELDS};
use serde_json::Value;

/// Upstream's prune (`skip` false) and skipPrune (`skip` true, below
/// x-kubernetes-preserve-unknown-fields, where unknown fields stay).
pub(super) fn prune_value(
    x: &mut Value,
    s: Option<Schema>,
    skip: bool,
    root: bool,
    path: &mut String,
    pruned: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let skip = skip || s.is_some_and(Schema::preserves_unknown);
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                if !skip {
                    pruned.extend(map.keys().map(|k| child(path, k)));
                    map.clear();
                }
                return;
            };
            // The root is an embedded resource too: its type and object meta are handled elsewhere.
            let meta = |k: &str| (root || s.embedded()) && META_FIELDS.contains(&k);
            for (k, v) in map.iter_mut() {
                if meta(k) {
                    continue;
                }
                if let Some(sub) = s.property(k).map(Some).or_else(|| s.additional()) {
                    let len = path.len();
                    *path = child(path, k);
                    prune_value(v, sub, false, false, path, pruned, depth + 1);
                    path.truncate(len);
                }
            }
            if !skip {
                map.retain(|k, _| {
                    let known = meta(k) || s.property(k).is_some() || s.additional().is_some();
                    if !known {
                        pruned.push(child(path, k));
                    }
                    known
                });
            }
        }
        Value::Array(items) => {
            let sub = s.and_then(Schema::items);
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                prune_value(v, sub, skip, false, path, pruned, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Upstream's PruneNonNullableNullsWithoutDefaults: a null the schema
/// neither allows nor can default goes (a defaultable one is defaulted later).
pub(super) fn drop_nulls(x: &mut Value, s: Option<Schema>, root: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => map.retain(|k, v| {
            if root && k == "metadata" {
                return true;
            }
            let sub = s.and_then(|s| s.field(k));
            if v.is_null() && sub.is_some_and(|s| !s.nullable() && s.default().is_none()) {
                return false;
            }
            drop_nulls(v, sub, false, depth + 1);
            true
        }),
        Value::Array(items) => {
            let sub = s.and_then(Schema::items);
            for v in items {
                drop_nulls(v, sub, false, depth + 1);
            }
        }
        _ => {}
    }
}
