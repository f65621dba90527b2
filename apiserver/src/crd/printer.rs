//! Tables of custom resources, as upstream's CRD table convertor builds them:
//! Name, then the version's `additionalPrinterColumns` (Age, from
//! `.metadata.creationTimestamp`, when it declares none), each cell the
//! first value its JSONPath selects, typed as the column says (a date as
//! the age it gives).

use serde_json::{json, Value};
use skiff_machinery::catalog::Custom;
use skiff_machinery::jsonpath::{self, JsonPath};

const NAME_DOC: &str = crate::tables::docs::META_NAME;
const CREATED_DOC: &str = crate::tables::docs::META_CREATION_TIMESTAMP;

/// The columns declared, or upstream's default.
fn declared(custom: &Custom) -> Vec<Value> {
    match custom.columns.as_array() {
        Some(cols) if !cols.is_empty() => cols.clone(),
        _ => vec![json!({
            "name": "Age", "type": "date", "description": CREATED_DOC,
            "jsonPath": ".metadata.creationTimestamp",
        })],
    }
}

/// The Table's `columnDefinitions`.
pub fn column_definitions(custom: &Custom) -> Value {
    let mut out = vec![json!({
        "name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0,
    })];
    for col in declared(custom) {
        let path = col
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let description = col
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(String::from)
            .unwrap_or_else(|| {
                format!("Custom resource definition column (in JSONPath format): {path}")
            });
        out.push(json!({
            "name": col.get("name").cloned().unwrap_or(json!("")),
            "type": col.get("type").cloned().unwrap_or(json!("string")),
            "format": col.get("format").cloned().unwrap_or(json!("")),
            "description": description,
            "priority": col.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    Value::Array(out)
}

/// One object's cells, in column order.
pub fn cells(custom: &Custom, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut out = vec![json!(crate::meta::name(obj))];
    for col in declared(custom) {
        let ty = col.get("type").and_then(Value::as_str).unwrap_or("string");
        let path = col
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cell = match JsonPath::parse(path) {
            Ok(p) => jsonpath::cell(&p.find(obj), ty),
            Err(_) => Value::Null,
        };
        out.push(match cell {
            Value::String(at) if ty == "date" => json!(age(&at, now)),
            other => other,
        });
    }
    out
}

/// A date cell as upstream's convertor words it: the age, `<unknown>` for
/// no time, `<invalid>` for what is no time or lies ahead.
fn age(at: &str, now: jiff::Timestamp) -> String {
    if at.is_empty() || at == "null" {
        return "<unknown>".into();
    }
    match at.parse::<jiff::Timestamp>() {
        Ok(t) if t.as_second() == -62_135_596_800 => "<unknown>".into(),
        Ok(t) if t > now + jiff::SignedDuration::from_secs(1) => "<invalid>".into(),
        Ok(t) => crate::tables::human_duration(now.duration_since(t).unsigned_abs()),
        Err(_) => "<invalid>".into(),
    }
}
