//! A CRD printer column's cell, after apiextensions-apiserver's
//! `registry/customresource/tableconvertor` (`ConvertToTable`, `cellForJSONValue`).

use serde_json::Value;

use crate::gofmt;

/// Go's encoder has no depth limit; this one stops (and the cell is null)
/// well past what a stored object can nest.
const MAX_JSON_DEPTH: usize = 1000;

/// The cell for a column of type `ty` (`integer`, `number`, `boolean`, `string`
/// or `date`) from the values its path selected.
///
/// Upstream keeps only the first value; none (or a failed path) is a null cell.
/// `string` columns print any value (`<no value>` for null, maps and lists as
/// JSON); the others take a value of their type or are null, except that
/// `integer` truncates a float and `number` takes an integer.
///
/// `date` cells are the raw string here, but upstream's server humanizes them
/// (`ConvertToHumanReadableDateType`): the caller turns `""`, `"null"` and the
/// zero time into `<unknown>`, what is not RFC 3339 into `<invalid>`, and the
/// rest into the age since then as for `metadata.creationTimestamp` (over a
/// second ahead is `<invalid>`, less is `0s`).
pub fn cell(values: &[&Value], ty: &str) -> Value {
    let Some(&value) = values.first() else {
        return Value::Null;
    };
    match (ty, value) {
        ("string", v) => text(v).map_or(Value::Null, Value::String),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => i.into(),
            None => (n.as_f64().unwrap_or_default() as i64).into(),
        },
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, number),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// A float cell; whole ones as integers, since Go's encoder writes `2`, not `2.0`.
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        (f as i64).into()
    } else {
        f.into()
    }
}

/// A value as upstream's JSONPath printer writes one: strings bare, numbers in
/// Go's `%v`, null as `<no value>`, maps and lists as Go's compact JSON.
fn text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => gofmt::float(n.as_f64()?),
        },
        Value::Array(_) | Value::Object(_) => gofmt::json_within(v, MAX_JSON_DEPTH)?,
    })
}
