//! Lenient readers for fields of plain Kubernetes JSON.
//!
//! Printers read objects the way Go's typed structs see them: a missing or
//! mistyped field reads as the zero value ("", 0, empty list), so a sparse
//! object still prints instead of failing the whole table.

use serde_json::{Map, Value};

/// The value at `path`, if every step exists.
pub(super) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

/// The string at `path`, or "".
pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The string at `path`, if present (Go `*string`).
pub(super) fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// The integer at `path`, or 0.
pub(super) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// The integer at `path`, if present (Go `*int32`).
pub(super) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let n = at(v, path)?;
    n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))
}

/// The boolean at `path`, if present (Go `*bool`).
pub(super) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

/// The array at `path`, or an empty slice.
pub(super) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, if present.
pub(super) fn obj_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(v, path).and_then(Value::as_object)
}

/// Number of entries of the map (or list) at `path`; 0 when absent.
pub(super) fn len_at(v: &Value, path: &[&str]) -> i64 {
    match at(v, path) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

/// `metadata.name`.
pub(super) fn name(v: &Value) -> &str {
    str_at(v, &["metadata", "name"])
}

/// Whether `metadata.deletionTimestamp` is set.
pub(super) fn deleting(v: &Value) -> bool {
    matches!(at(v, &["metadata", "deletionTimestamp"]), Some(t) if !t.is_null())
}

/// A resource.Quantity as printed by Go: the serialized string, or `zero`
/// when absent (callers pass "0" for a zero-value Quantity and "<nil>" for a
/// nil `*Quantity`).
pub(super) fn quantity(v: Option<&Value>, zero: &str) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => zero.to_string(),
    }
}

/// An IntOrString as printed by Go's `String()`.
pub(super) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}
