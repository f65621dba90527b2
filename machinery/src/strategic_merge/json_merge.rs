//! JSON merge patch (RFC 7386), what upstream applies to kinds without Go
//! types: maps merge, `null` deletes, anything else (lists too) is replaced.

use serde_json::Value;

/// Merges `patch` into `target`.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target) = target else {
        unreachable!()
    };
    for (k, v) in patch {
        if v.is_null() {
            target.shift_remove(k);
        } else if let Some(slot) = target.get_mut(k) {
            merge(slot, v);
        } else {
            let mut fresh = Value::Null;
            merge(&mut fresh, v);
            target.insert(k.clone(), fresh);
        }
    }
}
