//! Structural defaulting: a schema's `default`s where fields are absent (or
//! null and not nullable), in properties, array items and map values.

use super::prune::prune_value;
use super::{Schema, MAX_DEPTH};
use serde_json::Value;

pub(super) fn default_value(x: &mut Value, s: Schema, root: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(map) => {
            for (k, prop) in s.properties() {
                let Some(default) = prop.default().filter(|_| !(root && k == "metadata")) else {
                    continue;
                };
                let missing = map.get(k).is_none_or(|v| v.is_null() && !prop.nullable());
                if missing {
                    map.insert(k.clone(), pruned_default(default, prop));
                }
            }
            for (k, v) in map.iter_mut() {
                if root && k == "metadata" {
                    continue;
                }
                if let Some(prop) = s.property(k) {
                    default_value(v, prop, false, depth + 1);
                } else if let Some(Some(sub)) = s.additional() {
                    fill_null(v, sub);
                    default_value(v, sub, false, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.items() {
                for v in items {
                    fill_null(v, sub);
                    default_value(v, sub, false, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn fill_null(v: &mut Value, s: Schema) {
    if let Some(default) = s.default().filter(|_| v.is_null() && !s.nullable()) {
        *v = pruned_default(default, s);
    }
}

/// Upstream prunes each default once, when it reads the CRD.
fn pruned_default(default: &Value, s: Schema) -> Value {
    let mut v = default.clone();
    prune_value(
        &mut v,
        Some(s),
        false,
        false,
        &mut String::new(),
        &mut Vec::new(),
        0,
    );
    v
}
