//! List types (upstream's ValidateListSetsAndMaps, run after the schema):
//! duplicates in `x-kubernetes-list-type` sets and maps.

use super::validate::deep_key;
use super::{child, Schema, MAX_DEPTH};
use crate::error::{Cause, CauseKind};
use serde_json::{Map, Value};
use skiff_machinery::gofmt;
use std::collections::HashMap;

pub(super) fn list_types_in_map(
    s: Schema,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    depth: usize,
    out: &mut Vec<Cause>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let entries = || map.iter().filter(|(k, _)| !(root && *k == "metadata"));
    if let Some(Some(sub)) = s.additional() {
        for (k, v) in entries() {
            list_types(sub, v, &format!("{path}[{k}]"), depth + 1, out);
        }
    }
    for (k, v) in entries() {
        if let Some(sub) = s.property(k) {
            list_types(sub, v, &child(path, k), depth + 1, out);
        }
    }
}

fn list_types(s: Schema, x: &Value, path: &str, depth: usize, out: &mut Vec<Cause>) {
    match x {
        Value::Array(items) => list_types_in_array(s, items, path, depth, out),
        Value::Object(map) => list_types_in_map(s, map, path, false, depth, out),
        _ => {}
    }
}

fn list_types_in_array(s: Schema, items: &[Value], path: &str, depth: usize, out: &mut Vec<Cause>) {
    if depth > MAX_DEPTH {
        return;
    }
    match s.text("x-kubernetes-list-type") {
        "set" => {
            for i in repeats(items.iter().map(set_key)) {
                out.push(duplicate(&format!("{path}[{i}]"), &items[i]));
            }
        }
        "map" => list_map(s, items, path, out),
        _ => {}
    }
    if let Some(sub) = s.items() {
        for (i, v) in items.iter().enumerate() {
            list_types(sub, v, &format!("{path}[{i}]"), depth + 1, out);
        }
    }
}

/// Items of a list-type map must be objects (or null) with distinct keys.
fn list_map(s: Schema, items: &[Value], path: &str, out: &mut Vec<Cause>) {
    if let Some(i) = items.iter().position(|x| !x.is_null() && !x.is_object()) {
        out.push(Cause {
            kind: CauseKind::Invalid,
            field: format!("{path}[{i}]"),
            message: format!(
                "Invalid value: {}: must be an object for an array of list-type map",
                gofmt::bad_value(&items[i])
            ),
        });
        return;
    }
    let keys: Vec<&str> = s.strings("x-kubernetes-list-map-keys").collect();
    let key_of = |x: &Value| -> Value {
        let fields = keys
            .iter()
            .filter_map(|k| Some((k.to_string(), x.get(k)?.clone())));
        Value::Object(fields.collect())
    };
    let ids: Vec<String> = match keys[..] {
        // One key compares its value alone; a missing one is a value of its own.
        [key] => items
            .iter()
            .map(|x| x.get(key).map_or("u".into(), set_key))
            .collect(),
        _ => items.iter().map(|x| set_key(&key_of(x))).collect(),
    };
    for i in repeats(ids.into_iter()) {
        out.push(duplicate(&format!("{path}[{i}]"), &key_of(&items[i])));
    }
}

/// How upstream tells set items apart: scalars by Go equality, compound
/// values by their JSON.
fn set_key(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => format!("c{}", gofmt::json(v)),
        v => deep_key(v),
    }
}

/// Indices where a key shows up for the second time.
fn repeats(keys: impl Iterator<Item = String>) -> Vec<usize> {
    let mut counts = HashMap::new();
    keys.enumerate()
        .filter_map(|(i, k)| {
            let n = counts.entry(k).or_insert(0);
            *n += 1;
            (*n == 2).then_some(i)
        })
        .collect()
}

fn duplicate(field: &str, value: &Value) -> Cause {
    Cause {
        kind: CauseKind::Duplicate,
        field: field.to_string(),
        message: format!("Duplicate value: {}", gofmt::bad_value(value)),
    }
}
