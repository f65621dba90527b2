//! The order of a merged list (upstream's normalizeElementOrder and friends).
//!
//! Elements are identified by their merge key (lists of maps) or by their value
//! (lists of primitives); `key` is `None` for the latter. Precedence of orders:
//! `$setElementOrder` (or the patch list) first, then the original list. So
//! without an order list, elements the original lacks land before the
//! server-only ones, as upstream does.

use serde_json::Value;

use super::{invalid, PatchError};

/// The identity of every element, checking that elements of a keyed list are
/// maps carrying the merge key.
pub(crate) fn ids(list: &[Value], key: Option<&str>) -> Result<Vec<Value>, PatchError> {
    list.iter().map(|v| Ok(id(v, key)?.clone())).collect()
}

fn id<'a>(item: &'a Value, key: Option<&str>) -> Result<&'a Value, PatchError> {
    let Some(key) = key else { return Ok(item) };
    let Some(map) = item.as_object() else {
        return Err(invalid(format!("expected a map, but received {item}")));
    };
    map.get(key).ok_or_else(|| no_merge_key(item, key))
}

pub(crate) fn no_merge_key(item: &Value, key: &str) -> PatchError {
    invalid(format!(
        "map: {item} does not contain declared merge key: {key}"
    ))
}

/// JSON equality as Go sees decoded values: every number is a float64.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn position(ids: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let wanted = match key {
        Some(k) => item.get(k)?,
        None => item,
    };
    ids.iter().position(|v| same(v, wanted))
}

/// Splits `merged` into the elements named by `by` (in the patch or the order
/// list) and the others (present only on the server).
pub(crate) fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let (mut named, mut server_only) = (Vec::new(), Vec::new());
    for item in merged {
        let item_id = id(&item, key)?;
        if by.iter().any(|b| same(b, item_id)) {
            named.push(item);
        } else {
            server_only.push(item);
        }
    }
    Ok((named, server_only))
}

/// Sorts the patch's elements by `patch_order` and the server-only ones by
/// `server_order`, then interleaves them keeping both relative orders.
pub(crate) fn normalize(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by(patch_items, patch_order, key)?;
    let server_only = sort_by(server_only, server_order, key)?;
    Ok(interleave(server_only, patch_items, server_order, key))
}

/// Stable sort by position in `order`. Upstream's comparator is not a strict
/// order when an element is missing from `order`; such elements (which valid
/// patches never produce) go last here. `$patch: delete` elements go last too.
fn sort_by(
    items: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let (mut keep, mut deletes) = (Vec::new(), Vec::new());
    for item in items {
        if key.is_some() {
            id(&item, key)?;
            if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                deletes.push(item);
                continue;
            }
        }
        keep.push(item);
    }
    keep.sort_by_key(|item| position(order, item, key).unwrap_or(usize::MAX));
    keep.extend(deletes);
    Ok(keep)
}

/// Upstream's mergeSortedSlice: walks both lists, taking a server-only
/// element first only when both are in the original list and it came first
/// there; otherwise the patch element wins.
fn interleave(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => return out,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    position(server_order, l, key),
                    position(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
}

/// Upstream's validatePatchWithSetOrderList: the patch list's elements (minus
/// deletions) must appear in the `$setElementOrder` list, in the same order.
pub(crate) fn check_patch_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let is_directive = |v: &Value| v.get("$patch").is_some();
    let mut listed = patch
        .iter()
        .filter(|v| key.is_none() || !is_directive(v))
        .peekable();
    let mut order_iter = order.iter();
    while let Some(p) = listed.peek() {
        if is_directive(p) {
            listed.next();
            continue;
        }
        let Some(o) = order_iter.next() else {
            let show = |l: &[Value]| Value::Array(l.to_vec()).to_string();
            return Err(invalid(format!(
                "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
                show(patch),
                show(order)
            )));
        };
        if same(id(p, key)?, id(o, key)?) {
            listed.next();
        }
    }
    Ok(())
}
