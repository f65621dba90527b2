//! A CRD printer column's cell, after apiextensions-apiserver's
//! `registry/customresource/tableconvertor` (`ConvertToTable`, `cellForJSONValue`).

use std::fmt::Write;

use serde_json::Value;

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
            None => go_float(n.as_f64()?, |exp| !(-4..6).contains(&exp), true),
        },
        Value::Array(_) | Value::Object(_) => {
            let mut out = String::new();
            go_json(v, &mut out, 0)?;
            out
        }
    })
}

/// Go's `json.Marshal` of a decoded value: sorted keys, HTML-safe strings,
/// integers as such and floats in Go's form.
fn go_json(v: &Value, out: &mut String, depth: usize) -> Option<()> {
    if depth > MAX_JSON_DEPTH {
        return None;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => write!(out, "{i}").ok()?,
            None => out.push_str(&go_float(
                n.as_f64()?,
                |exp| !(-6..21).contains(&exp),
                false,
            )),
        },
        Value::String(s) => go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(key, out);
                out.push(':');
                go_json(item, out, depth + 1)?;
            }
            out.push('}');
        }
    }
    Some(())
}

/// A JSON string as Go escapes it, `<`, `>`, `&`, U+2028 and U+2029 included.
fn go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\0'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `f` with Go's shortest digits: fixed, or `d.ddde±x` when `scientific(x)`
/// (the exponent at least two digits when `pad`, as `%v` writes it; JSON trims).
fn go_float(f: f64, scientific: impl Fn(i32) -> bool, pad: bool) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if f == 0.0 || !scientific(exp) {
        return f.to_string();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    let width = if pad { 2 } else { 1 };
    format!("{mantissa}e{sign}{:0width$}", exp.abs())
}
