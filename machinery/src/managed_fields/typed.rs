//! The walks over an object that upstream's typed values do: the set of
//! fields a value sets, the comparison of two values (added, modified,
//! removed fields), the merge of an applied configuration into a live
//! object, and the removal of a set of fields. Lists are walked by the key of
//! their items, so the paths are the same whatever the items' order.

use super::path::{values_equal, Path, PathElement};
use super::schema::{List, Ty};
use super::set::Set;
use serde_json::{Map, Value};

/// The path element of a list item.
pub fn item_element(item: &Value, list: &List) -> Result<PathElement, String> {
    match list {
        List::Map(keys, defaults) => {
            let Value::Object(m) = item else {
                return Err("associative list with keys may not have non-map elements".into());
            };
            let mut fields = Vec::with_capacity(keys.len());
            for k in keys {
                let v = match m.get(*k) {
                    Some(v) => v.clone(),
                    None => match defaults.iter().find(|(name, _)| name == k) {
                        Some((_, d)) => Value::String((*d).to_string()),
                        None => return Err(format!(
                            "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                        )),
                    },
                };
                fields.push((k.to_string(), v));
            }
            Ok(PathElement::key(fields))
        }
        List::Set => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => {
                Err("associative list without keys has an element that's a list type".into())
            }
            v => Ok(PathElement::Value(v.clone())),
        },
        List::Atomic => Err("invalid indexing of non-associative list".into()),
    }
}

/// The items of a keyed list, by element, in list order; an element seen
/// twice is reported, or kept only once when duplicates are allowed (live
/// objects may hold them, applied configurations may not).
fn index<'a>(
    items: &'a [Value],
    list: &List,
    path: &[PathElement],
    allow_duplicates: bool,
) -> Result<Vec<(PathElement, Vec<&'a Value>)>, String> {
    let mut out: Vec<(PathElement, Vec<&'a Value>)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = item_element(item, list)
            .map_err(|e| format!("{}: element {i}: {e}", super::path::display(path)))?;
        match out.iter_mut().find(|(p, _)| *p == pe) {
            Some(_) if !allow_duplicates => {
                return Err(format!(
                    "{}: duplicate entries for key {}",
                    super::path::display(path),
                    pe.display()
                ))
            }
            Some((_, seen)) => seen.push(item),
            None => out.push((pe, vec![item])),
        }
    }
    Ok(out)
}

/// The fields `v` sets (upstream's ToFieldSet). Duplicated list items are
/// owned as a whole.
pub fn field_set(v: &Value, ty: Ty) -> Result<Set, String> {
    let mut out = Set::new();
    walk_set(v, ty, &List::Atomic, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn walk_set(v: &Value, ty: Ty, list: &List, path: &mut Path, out: &mut Set) -> Result<(), String> {
    match v {
        // (For a list, `ty` is its items' type: its own kind is `list`.)
        Value::Object(_) if ty == Ty::Atomic => out.insert(path),
        Value::Object(m) => {
            for (k, child) in m {
                let (cty, clist) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                walk_set(child, cty, &clist, path, out)?;
                let empty_map = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_map || !ty.named() {
                    out.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(_) if *list == List::Atomic => out.insert(path),
        Value::Array(items) => {
            for (pe, seen) in index(items, list, path, true)? {
                path.push(pe);
                if let [item] = seen.as_slice() {
                    walk_set(item, ty, &List::Atomic, path, out)?;
                }
                out.insert(path);
                path.pop();
            }
        }
        _ => out.insert(path),
    }
    Ok(())
}

/// Fields added, changed and removed from `lhs` to `rhs`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

pub fn compare(lhs: &Value, rhs: &Value, ty: Ty) -> Result<Comparison, String> {
    let mut c = Comparison::default();
    walk_compare(
        Some(lhs),
        Some(rhs),
        ty,
        &List::Atomic,
        &mut Vec::new(),
        &mut c,
    )?;
    Ok(c)
}

/// How two sides of a comparison or merge are walked.
enum Node {
    Leaf,
    Map,
    List,
}

fn node(l: Option<&Value>, r: Option<&Value>, ty: Ty, list: &List) -> Node {
    let fits = |v: Option<&Value>, f: fn(&Value) -> bool| v.is_none_or(|v| v.is_null() || f(v));
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    let any = |f: fn(&Value) -> bool| l.is_some_and(f) || r.is_some_and(f);
    // Both sides empty (or null) is a leaf, which keeps {} and null apart.
    if empty(l) && empty(r) {
        return Node::Leaf;
    }
    if any(Value::is_object)
        && fits(l, Value::is_object)
        && fits(r, Value::is_object)
        && ty != Ty::Atomic
    {
        Node::Map
    } else if any(Value::is_array)
        && fits(l, Value::is_array)
        && fits(r, Value::is_array)
        && *list != List::Atomic
    {
        Node::List
    } else {
        Node::Leaf
    }
}

fn walk_compare(
    l: Option<&Value>,
    r: Option<&Value>,
    ty: Ty,
    list: &List,
    path: &mut Path,
    c: &mut Comparison,
) -> Result<(), String> {
    match node(l, r, ty, list) {
        Node::Leaf => {
            match (l, r) {
                (None, _) => c.added.insert(path),
                (_, None) => c.removed.insert(path),
                (Some(a), Some(b)) if !values_equal(a, b) => c.modified.insert(path),
                _ => {}
            }
            return Ok(());
        }
        Node::Map => {
            let empty = Map::new();
            let lm = l.and_then(Value::as_object).unwrap_or(&empty);
            let rm = r.and_then(Value::as_object).unwrap_or(&empty);
            for k in lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k))) {
                let (cty, clist) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                walk_compare(lm.get(k), rm.get(k), cty, &clist, path, c)?;
                path.pop();
            }
        }
        Node::List => {
            let none: &[Value] = &[];
            let ls = index(
                l.and_then(Value::as_array).map_or(none, Vec::as_slice),
                list,
                path,
                true,
            )?;
            let rs = index(
                r.and_then(Value::as_array).map_or(none, Vec::as_slice),
                list,
                path,
                true,
            )?;
            fn find<'a>(
                side: &[(PathElement, Vec<&'a Value>)],
                pe: &PathElement,
            ) -> Vec<&'a Value> {
                side.iter()
                    .find(|(p, _)| p == pe)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            }
            let mut all: Vec<&PathElement> = ls.iter().map(|(p, _)| p).collect();
            all.extend(
                rs.iter()
                    .map(|(p, _)| p)
                    .filter(|p| !ls.iter().any(|(q, _)| q == *p)),
            );
            for pe in all {
                let (li, ri) = (find(&ls, pe), find(&rs, pe));
                path.push(pe.clone());
                match (li.len(), ri.len()) {
                    (0..=1, 0..=1) => walk_compare(
                        li.first().copied(),
                        ri.first().copied(),
                        ty,
                        &List::Atomic,
                        path,
                        c,
                    )?,
                    // Duplicates on both sides: compared as one atomic value.
                    (2.., 2..) => {
                        if li.len() != ri.len()
                            || li.iter().zip(&ri).any(|(a, b)| !values_equal(a, b))
                        {
                            c.modified.insert(path);
                        }
                    }
                    (2.., _) => {
                        if let Some(item) = ri.first() {
                            walk_compare(None, Some(item), ty, &List::Atomic, path, c)?;
                        }
                        c.removed.insert(path);
                    }
                    (_, _) => {
                        if let Some(item) = li.first() {
                            walk_compare(Some(item), None, ty, &List::Atomic, path, c)?;
                        }
                        c.added.insert(path);
                    }
                }
                path.pop();
            }
        }
    }
    // A map or list that appears or goes is itself added or removed.
    match (l, r) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        _ => {}
    }
    Ok(())
}

/// Checks an applied configuration the way upstream types it: every item of
/// a keyed list has its keys, and no key twice.
pub fn validate(v: &Value, ty: Ty) -> Result<(), String> {
    fn walk(v: &Value, ty: Ty, list: &List, path: &mut Path) -> Result<(), String> {
        match v {
            Value::Object(_) if ty == Ty::Atomic => Ok(()),
            Value::Object(m) => m.iter().try_for_each(|(k, child)| {
                let (cty, clist) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                let r = walk(child, cty, &clist, path);
                path.pop();
                r
            }),
            Value::Array(items) if *list != List::Atomic => {
                for (pe, seen) in index(items, list, path, false)? {
                    path.push(pe);
                    walk(seen[0], ty, &List::Atomic, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(v, ty, &List::Atomic, &mut Vec::new())
}

/// Merges an applied configuration `rhs` into `lhs`: what `rhs` sets wins,
/// maps and keyed lists merge item by item, atomic values are replaced.
pub fn merge(lhs: &Value, rhs: &Value, ty: Ty) -> Result<Value, String> {
    Ok(
        walk_merge(Some(lhs), Some(rhs), ty, &List::Atomic, &mut Vec::new())?
            .unwrap_or(Value::Null),
    )
}

fn walk_merge(
    l: Option<&Value>,
    r: Option<&Value>,
    ty: Ty,
    list: &List,
    path: &mut Path,
) -> Result<Option<Value>, String> {
    let (l, r) = match (l, r) {
        (l, None) => return Ok(l.cloned()),
        (None, r) => return Ok(r.map(without_nulls)),
        (Some(l), Some(r)) => (l, r),
    };
    match node(Some(l), Some(r), ty, list) {
        Node::Leaf => Ok(Some(without_nulls(r))),
        Node::Map => {
            let empty = Map::new();
            let lm = l.as_object().unwrap_or(&empty);
            let rm = r.as_object().unwrap_or(&empty);
            let mut out = Map::new();
            // The live object's order, then what the configuration adds.
            for k in lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k))) {
                let (cty, clist) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                let merged = walk_merge(lm.get(k), rm.get(k), cty, &clist, path)?;
                path.pop();
                // A null leaves no field behind (upstream's typed objects drop it).
                if let Some(v) = merged.filter(|v| !v.is_null()) {
                    out.insert(k.clone(), v);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        Node::List => merge_list(l, r, ty, list, path),
    }
}

/// A configuration's value as upstream's typed objects keep it: no null fields.
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Upstream's list merge order: the configuration's items in its order,
/// with live-only items kept where they were relative to them.
fn merge_list(
    l: &Value,
    r: &Value,
    ty: Ty,
    list: &List,
    path: &mut Path,
) -> Result<Option<Value>, String> {
    let none: &[Value] = &[];
    let litems = l.as_array().map_or(none, Vec::as_slice);
    let lhs = index(litems, list, path, true)?;
    let rhs = index(r.as_array().map_or(none, Vec::as_slice), list, path, false)?;
    // Every live item by element, in list order (duplicates included).
    let lpes: Vec<PathElement> = litems
        .iter()
        .map(|i| item_element(i, list))
        .collect::<Result<_, _>>()?;
    let live = |pe: &PathElement| -> Option<Value> {
        // A duplicated live item merges as nothing (upstream makes it null).
        lhs.iter().find(|(p, _)| p == pe).map(|(_, v)| {
            if v.len() == 1 {
                v[0].clone()
            } else {
                Value::Null
            }
        })
    };
    let in_rhs = |pe: &PathElement| rhs.iter().any(|(p, _)| p == pe);
    let mut shared = rhs
        .iter()
        .map(|(p, _)| p)
        .filter(|p| lhs.iter().any(|(q, _)| q == *p));
    let mut next_shared = shared.next();
    let mut merged_rhs: Vec<&PathElement> = Vec::new();
    let mut out = Vec::with_capacity(litems.len().max(rhs.len()));
    let push = |pe: &PathElement,
                lv: Option<Value>,
                rv: Option<&Value>,
                path: &mut Path,
                out: &mut Vec<Value>| {
        path.push(pe.clone());
        let m = walk_merge(lv.as_ref(), rv, ty, &List::Atomic, path);
        path.pop();
        m.map(|m| out.extend(m))
    };
    let (mut li, mut ri) = (0, 0);
    while li < lpes.len() || ri < rhs.len() {
        if li < lpes.len() && ri < rhs.len() {
            let pe = &lpes[li];
            if *pe == rhs[ri].0 {
                merged_rhs.push(pe);
                push(pe, live(pe), Some(rhs[ri].1[0]), path, &mut out)?;
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if in_rhs(pe) && next_shared.is_some_and(|n| n != pe) {
                // Shared, but its turn comes with the configuration's order.
                li += 1;
                continue;
            }
        }
        if li < lpes.len() {
            let pe = &lpes[li];
            if !in_rhs(pe) {
                push(pe, Some(litems[li].clone()), None, path, &mut out)?;
                li += 1;
                continue;
            } else if merged_rhs.contains(&pe) {
                li += 1;
            }
        }
        if ri < rhs.len() {
            let (pe, items) = &rhs[ri];
            merged_rhs.push(pe);
            push(pe, live(pe), Some(items[0]), path, &mut out)?;
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// `v` without the fields (and list items) that are members of `set`; a map
/// or list left empty goes too (upstream's typed objects drop it).
pub fn remove(v: &Value, set: &Set, ty: Ty) -> Result<Value, String> {
    Ok(walk_remove(v, set, ty, &List::Atomic)?.unwrap_or(Value::Null))
}

fn walk_remove(v: &Value, set: &Set, ty: Ty, list: &List) -> Result<Option<Value>, String> {
    match v {
        // Reached only when something below an atomic value is to go: all of it goes.
        Value::Object(_) if ty == Ty::Atomic => Ok(None),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, child) in m {
                let pe = PathElement::Field(k.clone());
                if set.members.contains(&pe) {
                    continue;
                }
                let kept = match set.child(&pe) {
                    Some(sub) => {
                        let (cty, clist) = ty.field(k);
                        walk_remove(child, sub, cty, &clist)?
                    }
                    None => Some(child.clone()),
                };
                if let Some(kept) = kept {
                    out.insert(k.clone(), kept);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        Value::Array(_) if *list == List::Atomic => Ok(None),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let pe = item_element(item, list)?;
                if set.members.contains(&pe) {
                    continue;
                }
                let kept = match set.child(&pe) {
                    Some(sub) => walk_remove(item, sub, ty, &List::Atomic)?,
                    None => Some(item.clone()),
                };
                out.extend(kept);
            }
            Ok((!out.is_empty()).then_some(Value::Array(out)))
        }
        other => Ok(Some(other.clone())),
    }
}

/// `set` plus every struct field that has owned fields below it (upstream's
/// EnsureNamedFieldsAreMembers), so removing a field can remove its parent.
pub fn with_named_fields(set: &Set, ty: Ty) -> Set {
    let mut out = Set {
        members: set.members.clone(),
        children: Default::default(),
    };
    for (pe, child) in &set.children {
        let cty = match pe {
            PathElement::Field(name) => {
                if ty.named() {
                    out.members.insert(pe.clone());
                }
                ty.field(name).0
            }
            // An item has its list's item type, which the field already gave.
            _ => ty,
        };
        out.children
            .insert(pe.clone(), with_named_fields(child, cty));
    }
    out
}
