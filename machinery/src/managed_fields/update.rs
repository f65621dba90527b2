//! The Update operation (create, PUT, non-apply PATCH): the fields a write
//! added or changed become its manager's and leave every other manager;
//! removed fields leave everyone. The entry's time moves only when the
//! manager took something, so a write that changes nothing changes nothing.

use super::entries::{self, Entry, UPDATE};
use super::{schema, set_entries, strip, typed, without_managed_fields, Scope};
use serde_json::Value;

/// Records `manager`'s update of `live` (None on create) into `new`'s
/// managedFields. Errors mean the objects could not be walked (a keyed list
/// item without its key); upstream then keeps the live object's entries.
pub fn update(
    scope: &Scope,
    live: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
) -> Result<(), String> {
    let live_entries = || {
        let mf = live.and_then(|l| l.pointer("/metadata/managedFields"));
        entries::decode(mf).unwrap_or_default()
    };
    // The request may set managedFields itself (edit, replace) unless it
    // writes a subresource; an empty list (or one empty entry) resets them.
    let given = new.pointer("/metadata/managedFields");
    let mut managers = if !scope.subresource.is_empty() {
        live_entries()
    } else if is_reset(given) {
        Vec::new()
    } else {
        match entries::decode(given) {
            Ok(e) if !e.is_empty() => e,
            _ => live_entries(),
        }
    };
    let mut new_obj = without_managed_fields(new);
    // An object that has no entries is not tracked until something applies to it.
    if managers.is_empty() && live.is_some() {
        *new = new_obj;
        return Ok(());
    }
    let base = match live {
        Some(l) => without_managed_fields(l),
        None => schema::empty_object(scope.kind),
    };
    record(scope, &base, &new_obj, &mut managers, manager, now)?;
    entries::cap_updaters(&mut managers);
    set_entries(&mut new_obj, &managers);
    *new = new_obj;
    Ok(())
}

/// `[]` or `[{}]`: the request asks for no managed fields at all.
fn is_reset(given: Option<&Value>) -> bool {
    match given.and_then(Value::as_array).map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(|m| m.is_empty()),
        _ => false,
    }
}

/// The update from `old` to `new` (both without managedFields) as
/// `manager`'s, applied to `managers`.
pub(super) fn record(
    scope: &Scope,
    old: &Value,
    new: &Value,
    managers: &mut Vec<Entry>,
    manager: &str,
    now: &str,
) -> Result<(), String> {
    let cmp = scope.filter_comparison(typed::compare(old, new, scope.ty())?);
    let changed = cmp.modified.union(&cmp.added);
    for e in managers.iter_mut() {
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    managers.retain(|e| !e.set.is_empty());
    let taken = strip(&scope.filter(&changed));
    if taken.is_empty() {
        return Ok(());
    }
    let me = Entry::new(manager, UPDATE, scope.api_version, scope.subresource);
    match managers.iter_mut().find(|e| e.same_manager(&me)) {
        Some(e) => {
            e.set = e.set.union(&taken);
            e.time = Some(now.to_string());
        }
        None => managers.push(Entry {
            set: taken,
            time: Some(now.to_string()),
            ..me
        }),
    }
    Ok(())
}
