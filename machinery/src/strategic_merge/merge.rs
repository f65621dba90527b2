//! The walker: upstream's mergeMap / mergeSlice as the API server runs them
//! (parallel lists merged, nulls without a match dropped).

use serde_json::{Map, Value};

use super::order::{self, no_merge_key, same};
use super::schema::{Schema, Strategy, Ty};
use super::{invalid, PatchError};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Merges `patch` into `original`, both maps of type `ty`.
pub(crate) fn merge_map(
    s: &Schema,
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.shift_remove(PATCH) {
        return match directive.as_str() {
            // The patch is the new value; it may still carry nested directives.
            Some("replace") => merge_map(s, Map::new(), patch, ty),
            // Upstream leaves an empty map, not a missing field.
            Some("delete") => Ok(Map::new()),
            _ => Err(invalid(format!(
                "unknown patch type: {directive} in map: {}",
                Value::Object(patch)
            ))),
        };
    }
    if let Some(keys) = patch.shift_remove(RETAIN_KEYS) {
        retain_keys(&mut original, &patch, &keys)?;
    }
    // Ordered lists first: they consume their patch list.
    let ordered: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in ordered {
        let order = patch.shift_remove(&directive).unwrap_or_default();
        let field = directive_field(&directive, SET_ELEMENT_ORDER)?;
        set_element_order(s, &mut original, &mut patch, ty, field, order)?;
    }

    for (key, value) in patch {
        let (field, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(_) => (
                directive_field(&key, DELETE_FROM_PRIMITIVE_LIST)?.to_string(),
                true,
            ),
            None => (key, false),
        };
        if value.is_null() {
            if !delete_list {
                original.shift_remove(&field);
            }
            continue;
        }
        let (child, strategy) = s.field(ty, &field);
        // Take the value out in place so that an update keeps the key's position.
        let current = original.get_mut(&field).map(Value::take);
        let merged = if delete_list {
            match (current, value) {
                (Some(Value::Array(list)), Value::Array(remove)) => Some(Value::Array(
                    list.into_iter()
                        .filter(|v| !remove.iter().any(|r| same(r, v)))
                        .collect(),
                )),
                // Nothing to delete from: the list is not created.
                (current, _) => current,
            }
        } else {
            merge_value(s, current, value, child, strategy)?
        };
        match merged {
            Some(v) => original.insert(field, v),
            None => original.shift_remove(&field),
        };
    }
    Ok(original)
}

/// The new value of a field present in the patch (not null, not a deletion list).
fn merge_value(
    s: &Schema,
    current: Option<Value>,
    patch: Value,
    child: Ty,
    strategy: Strategy,
) -> Result<Option<Value>, PatchError> {
    match (current, patch, strategy) {
        (_, patch, Strategy::Replace) => materialize(s, patch, child),
        (Some(Value::Object(o)), Value::Object(p), _) => {
            Ok(Some(Value::Object(merge_map(s, o, p, child)?)))
        }
        (Some(Value::Array(o)), Value::Array(p), Strategy::Merge(key)) => Ok(Some(Value::Array(
            merge_list(s, o, p, merge_key(key), child)?,
        ))),
        // New field, changed type, scalar or replaced list: take the patch's value.
        (_, patch, _) => materialize(s, patch, child),
    }
}

fn merge_key(key: &'static str) -> Option<&'static str> {
    (!key.is_empty()).then_some(key)
}

/// A patch value used as is: directives stripped (elements carrying `$patch`
/// dropped, as upstream's removeDirectives does) and nulls in maps discarded.
/// `None` when the value itself is a directive map.
fn materialize(s: &Schema, patch: Value, ty: Ty) -> Result<Option<Value>, PatchError> {
    Ok(match patch {
        Value::Object(m) if m.contains_key(PATCH) => None,
        Value::Object(m) => Some(Value::Object(merge_map(s, Map::new(), m, ty)?)),
        Value::Array(list) => Some(Value::Array(materialize_list(s, list, ty)?)),
        other => Some(other),
    })
}

fn materialize_list(s: &Schema, list: Vec<Value>, elem: Ty) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        out.extend(materialize(s, v, elem)?);
    }
    Ok(out)
}

/// A list with the merge strategy: maps merged by `key`, primitives as a set.
fn merge_list(
    s: &Schema,
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&str>,
    elem: Ty,
) -> Result<Vec<Value>, PatchError> {
    merge_unordered(s, original, patch, key, elem)?.ordered()
}

/// A merged list before its order is settled.
struct Merged<'k> {
    /// The original's surviving elements (merged in place), then the new ones.
    items: Vec<Value>,
    key: Option<&'k str>,
    patch_order: Vec<Value>,
    server_order: Vec<Value>,
    /// What upstream's original list reads as once merged, which is the order
    /// `$setElementOrder` is applied against: merging a keyed list shifts out
    /// deleted elements and writes new ones into the freed slots of the same
    /// array (a quirk of the Go code, kept as it decides where server-only
    /// elements land when a patch both deletes and adds).
    after_merge: Vec<Value>,
}

impl Merged<'_> {
    /// Patch elements in patch order, interleaved with the server-only ones.
    fn ordered(self) -> Result<Vec<Value>, PatchError> {
        let (in_patch, server_only) = order::partition(self.items, &self.patch_order, self.key)?;
        order::normalize(
            in_patch,
            server_only,
            &self.patch_order,
            &self.server_order,
            self.key,
        )
    }
}

fn merge_unordered<'k>(
    s: &Schema,
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&'k str>,
    elem: Ty,
) -> Result<Merged<'k>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(Merged {
            items: original,
            key,
            patch_order: Vec::new(),
            server_order: Vec::new(),
            after_merge: Vec::new(),
        });
    }
    if element_kind(&original, &patch)? != Kind::Map {
        let mut items: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !items.iter().any(|m| same(m, v)) {
                items.push(v.clone());
            }
        }
        let after_merge = original.clone();
        return Ok(Merged {
            items,
            key: None,
            patch_order: patch,
            server_order: original,
            after_merge,
        });
    }
    let Some(key) = key else {
        return Err(invalid("cannot merge lists without merge key"));
    };
    let len = original.len();
    let before = order::ids(&original, Some(key))?;
    let (original, patch, replaced) = split_special_elements(s, original, patch, key, elem)?;
    let server_order = order::ids(&original, Some(key))?;
    let patch_order = order::ids(&patch, Some(key))?;
    let mut items = original;
    for item in patch {
        let Value::Object(item) = item else {
            unreachable!("element kinds checked")
        };
        let wanted = item
            .get(key)
            .ok_or_else(|| no_merge_key(&Value::Object(item.clone()), key))?;
        match find(&items, key, wanted)? {
            Some(i) => {
                let Value::Object(current) = items[i].take() else {
                    unreachable!("find only matches maps")
                };
                items[i] = Value::Object(merge_map(s, current, item, elem)?);
            }
            None => items.extend(materialize(s, Value::Object(item), elem)?),
        }
    }
    let after_merge = if replaced {
        before
    } else {
        let mut ids = order::ids(&items, Some(key))?;
        ids.truncate(len);
        ids
    };
    Ok(Merged {
        items,
        key: Some(key),
        patch_order,
        server_order,
        after_merge,
    })
}

/// Applies the `$patch` elements of a merge list: `delete` removes every
/// original element with that key, `replace` makes the rest of the patch
/// list the whole list. Returns the original, the remaining patch and whether
/// it replaced the list.
fn split_special_elements(
    s: &Schema,
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    elem: Ty,
) -> Result<(Vec<Value>, Vec<Value>, bool), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(PATCH) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let wanted = item.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                while let Some(i) = find(&original, key, wanted)? {
                    original.remove(i);
                }
            }
            // Keep going: later `$patch` elements must still be dropped.
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(invalid(
                    "merging lists cannot yet be specified in the patch",
                ))
            }
            _ => {
                return Err(invalid(format!(
                    "unknown patch type: {directive} in map: {item}"
                )))
            }
        }
    }
    if replace {
        return Ok((materialize_list(s, plain, elem)?, Vec::new(), true));
    }
    Ok((original, plain, false))
}

/// The index of the first map in `list` whose `key` equals `wanted`.
fn find(list: &[Value], key: &str, wanted: &Value) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Some(m) = v.as_object() else {
            return Err(invalid(format!("value for key {i} is not a map")));
        };
        if m.get(key).is_some_and(|k| same(k, wanted)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Map,
    Scalar(u8),
}

/// All elements of the lists must share one JSON type; lists of lists are not supported.
fn element_kind(a: &[Value], b: &[Value]) -> Result<Kind, PatchError> {
    let mut kind = None;
    for v in a.iter().chain(b) {
        let k = match v {
            Value::Object(_) => Kind::Map,
            Value::Array(_) => return Err(invalid("lists of lists are not supported")),
            Value::Null => Kind::Scalar(0),
            Value::Bool(_) => Kind::Scalar(1),
            Value::Number(_) => Kind::Scalar(2),
            Value::String(_) => Kind::Scalar(3),
        };
        match &kind {
            None => kind = Some(k),
            Some(prev) if *prev != k => {
                let show = |l: &[Value]| Value::Array(l.to_vec()).to_string();
                return Err(invalid(format!(
                    "list element types are not identical: {} {}",
                    show(a),
                    show(b)
                )));
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| invalid("no elements in any of the given slices"))
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any) into the
/// original, then orders the result by the given list, keeping server-only
/// elements where they were relative to the others.
fn set_element_order(
    s: &Schema,
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
    field: &str,
    order: Value,
) -> Result<(), PatchError> {
    let Value::Array(order) = order else {
        return Err(invalid("invalid patch format of setElementOrder list"));
    };
    let (child, strategy) = s.field(ty, field);
    // Only merge lists have an order to keep; others are simply replaced.
    let Strategy::Merge(key) = strategy else {
        return Ok(());
    };
    let key = merge_key(key);
    let current = match original.get_mut(field).map(Value::take) {
        Some(Value::Array(list)) => Some(list),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(invalid(format!(
                "expected a list for {field}, but received {other}"
            )))
        }
    };
    let patch_list = match patch.shift_remove(field) {
        Some(Value::Array(list)) => Some(list),
        None => None,
        Some(other) => {
            return Err(invalid(format!(
                "expected a list for {field}, but received {other}"
            )))
        }
    };
    order::check_patch_order(patch_list.as_deref().unwrap_or_default(), &order, key)?;
    let mut server_order = order::ids(current.as_deref().unwrap_or_default(), key)?;
    let merged = match (current, patch_list) {
        (Some(current), None) => current,
        (None, Some(p)) => materialize_list(s, p, child)?,
        (Some(current), Some(p)) => {
            let merged = merge_unordered(s, current, p, key, child)?;
            server_order.clone_from(&merged.after_merge);
            merged.ordered()?
        }
        (None, None) => return Ok(()),
    };
    let order_ids = order::ids(&order, key)?;
    let (listed, server_only) = order::partition(merged, &order_ids, key)?;
    let sorted = order::normalize(listed, server_only, &order_ids, &server_order, key)?;
    original.insert(field.to_string(), Value::Array(sorted));
    Ok(())
}

/// `$retainKeys`: original keys not listed are cleared; the patch may only set listed keys.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keys: &Value,
) -> Result<(), PatchError> {
    let bad = || invalid("invalid patch format of retainKeys");
    let keys = keys.as_array().ok_or_else(bad)?;
    let listed = |k: &str| keys.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch {
        let directive =
            k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER);
        if !v.is_null() && !directive && !listed(k) {
            return Err(bad());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `<prefix>/<field>` → field.
fn directive_field<'a>(key: &'a str, prefix: &str) -> Result<&'a str, PatchError> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| {
            if prefix == SET_ELEMENT_ORDER {
                invalid("invalid patch format of setElementOrder list")
            } else {
                invalid("invalid patch format of primitive list")
            }
        })
}
