//! Go's renderings of decoded JSON values, which upstream's messages and
//! printers carry: `%q` ([`quote`]), `%v` of a float64 ([`float`]),
//! encoding/json ([`json`], [`json_within`]), `%T` ([`type_name`]), `%#v`
//! ([`sharp`]) and how field.Error shows a bad value ([`bad_value`]).

use std::fmt::Write;

use serde_json::{Number, Value};

/// strconv.Quote (`%q`).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if c < ' ' || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || (c != ' ' && c.is_whitespace()) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Mantissa and decimal exponent of the shortest form.
fn scientific(f: f64) -> (String, i32) {
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    (mantissa.to_string(), exp.parse().unwrap_or(0))
}

/// `%v` of a float64: shortest digits, exponent form from 1e+06 or below 1e-04.
pub fn float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        }
        .into();
    }
    let (mantissa, exp) = scientific(f);
    if f != 0.0 && !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// encoding/json's float: exponent form from 1e21 or below 1e-6.
fn json_float(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let (mantissa, exp) = scientific(f);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{}", exp.abs())
    } else {
        format!("{f}")
    }
}

fn number(n: &Number, json: bool) -> String {
    match n.as_i64() {
        Some(i) => i.to_string(),
        None if json => json_float(n.as_f64().unwrap_or(0.0)),
        None => float(n.as_f64().unwrap_or(0.0)),
    }
}

/// A JSON string as Go escapes it, `<`, `>`, `&`, U+2028 and U+2029 included.
fn json_string(s: &str, out: &mut String) {
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

fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// encoding/json of a decoded value: keys sorted, HTML-safe strings, Go's
/// number forms.
pub fn json(v: &Value) -> String {
    json_within(v, usize::MAX).unwrap_or_default()
}

/// [`json`], or None when `v` nests deeper than `max_depth`: Go's encoder has
/// no limit, but a caller may want to stop well before the stack does.
pub fn json_within(v: &Value, max_depth: usize) -> Option<String> {
    let mut out = String::new();
    write_json(v, &mut out, 0, max_depth)?;
    Some(out)
}

fn write_json(v: &Value, out: &mut String, depth: usize, max_depth: usize) -> Option<()> {
    if depth > max_depth {
        return None;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n, true)),
        Value::String(s) => json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out, depth + 1, max_depth)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(key, out);
                out.push(':');
                write_json(item, out, depth + 1, max_depth)?;
            }
            out.push('}');
        }
    }
    Some(())
}

/// `%T` of a decoded value held in an interface{}: the Go type upstream's
/// errors name.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// `%#v` of a decoded value held in an interface{}.
pub fn sharp(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n, false),
        Value::String(s) => quote(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(sharp).collect();
            format!("{}{{{}}}", type_name(v), inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = sorted(map)
                .into_iter()
                .map(|(k, v)| format!("{}:{}", quote(k), sharp(v)))
                .collect();
            format!("{}{{{}}}", type_name(v), inner.join(", "))
        }
    }
}

/// How field.Error shows a bad value: strings quoted, numbers and bools
/// plain, null as "null", objects and arrays in Go syntax.
pub fn bad_value(v: &Value) -> String {
    match v {
        Value::Null => quote("null"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n, false),
        Value::String(s) => quote(s),
        Value::Array(_) | Value::Object(_) => sharp(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_renderings() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.5), "0.5");
        assert_eq!(float(123456.0), "123456");
        assert_eq!(float(1234567.0), "1.234567e+06");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(
            json(&json!({"b": 1e21, "a": [0.0000001, 1.5, "<"]})),
            r#"{"a":[1e-7,1.5,"\u003c"],"b":1e+21}"#
        );
        assert_eq!(quote("a\"b\\\n\u{1}é"), r#""a\"b\\\n\x01é""#);
        assert_eq!(
            bad_value(&json!({"a": null, "b": [true, 2]})),
            r#"map[string]interface {}{"a":interface {}(nil), "b":[]interface {}{true, 2}}"#
        );
        assert_eq!(bad_value(&Value::Null), r#""null""#);
    }

    #[test]
    fn json_as_go_encodes_it() {
        assert_eq!(
            json(&json!(
                "q\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}<>&\u{2028}\u{2029}é"
            )),
            "\"q\\\"\\\\\\n\\r\\t\\b\\f\\u0001\u{7f}\\u003c\\u003e\\u0026\\u2028\\u2029é\""
        );
        assert_eq!(
            json(&json!([1e-6, 1e20, -0.0, 2.0, u64::MAX])),
            "[0.000001,100000000000000000000,-0,2,18446744073709552000]"
        );
        let mut deep = json!(1);
        for _ in 0..10 {
            deep = json!([deep]);
        }
        assert_eq!(json_within(&deep, 10).map(|s| s.len()), Some(21));
        assert_eq!(json_within(&deep, 9), None);
    }
}
