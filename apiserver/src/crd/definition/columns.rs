//! Subresources (the scale paths), additional printer columns and selectable
//! fields, of the spec or of a version.

use super::field_path::resolve_field_path;
use super::structural::unsupported;
use super::{field, text};
use crate::error::Cause;
use serde_json::{json, Value};
use skiff_machinery::jsonpath;
use std::collections::HashSet;

/// Upstream's validateSimpleJSONPath, as the cause it gives.
fn simple_json_path(path: &str, field: &str) -> Option<Cause> {
    let msg = jsonpath::validate_column_path(path).err()?;
    Some(Cause::invalid(field, &json!(path), msg))
}

pub(super) fn validate_subresources(sub: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    let Some(scale) = sub.and_then(|s| field(s, "scale")) else {
        return;
    };
    for (key, prefix, msg) in [
        (
            "specReplicasPath",
            ".spec.",
            "should be a json path under .spec",
        ),
        (
            "statusReplicasPath",
            ".status.",
            "should be a json path under .status",
        ),
    ] {
        let field = format!("{path}.scale.{key}");
        let value = text(scale, key);
        if value.is_empty() {
            c.push(Cause::required(field));
        } else if let Some(e) = simple_json_path(value, &field) {
            c.push(e);
        } else if !value.starts_with(prefix) {
            c.push(Cause::invalid(field, &json!(value), msg));
        }
    }
    let selector = text(scale, "labelSelectorPath");
    if !selector.is_empty() {
        let field = format!("{path}.scale.labelSelectorPath");
        if let Some(e) = simple_json_path(selector, &field) {
            c.push(e);
        } else if !selector.starts_with(".spec.") && !selector.starts_with(".status.") {
            c.push(Cause::invalid(
                field,
                &json!(selector),
                "should be a json path under either .spec or .status",
            ));
        }
    }
}

/// A list of printer columns, each at `{path}[j]`.
pub(super) fn validate_columns(columns: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    for (j, col) in columns
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_column(col, &format!("{path}[{j}]"), c);
    }
}

fn validate_column(col: &Value, path: &str, c: &mut Vec<Cause>) {
    const TYPES: &str = "must be one of boolean,date,integer,number,string";
    const FORMATS: [&str; 8] = [
        "byte",
        "date",
        "date-time",
        "double",
        "float",
        "int32",
        "int64",
        "password",
    ];
    if text(col, "name").is_empty() {
        c.push(Cause::required(format!("{path}.name")));
    }
    let ty = text(col, "type");
    if ty.is_empty() {
        c.push(Cause::required_detail(format!("{path}.type"), TYPES));
    } else if !["integer", "number", "string", "boolean", "date"].contains(&ty) {
        c.push(Cause::invalid(format!("{path}.type"), &json!(ty), TYPES));
    }
    let format = text(col, "format");
    if !format.is_empty() && !FORMATS.contains(&format) {
        let msg = format!("must be one of {}", FORMATS.join(","));
        c.push(Cause::invalid(
            format!("{path}.format"),
            &json!(format),
            msg,
        ));
    }
    // Upstream names the field by its Go name here.
    let field = format!("{path}.JSONPath");
    let json_path = text(col, "jsonPath");
    if json_path.is_empty() {
        c.push(Cause::required(field));
    } else if let Some(e) = simple_json_path(json_path, &field) {
        c.push(e);
    }
}

const MAX_SELECTABLE_FIELDS: usize = 8;

pub(super) fn validate_selectable(
    fields: &Value,
    schema: &Value,
    path: &str,
    schema_path: &str,
    too_many_ok: bool,
    c: &mut Vec<Cause>,
) {
    if let Some(err) = unsupported(schema) {
        c.push(Cause::invalid(schema_path, &json!(""), err));
        return;
    }
    let mut unique = HashSet::new();
    for (i, f) in fields.as_array().into_iter().flatten().enumerate() {
        let field = format!("{path}[{i}].jsonPath");
        let json_path = text(f, "jsonPath");
        if json_path.is_empty() {
            c.push(Cause::required(field));
            continue;
        }
        let value = json!(json_path);
        let (resolved, found) = match resolve_field_path(json_path, schema, false) {
            Ok(r) => r,
            Err(e) => {
                c.push(Cause::invalid(
                    field,
                    &value,
                    format!("is an invalid path: {e}"),
                ));
                continue;
            }
        };
        if resolved.first().map(String::as_str) == Some("metadata") {
            c.push(Cause::invalid(
                field.clone(),
                &value,
                "must not point to fields in metadata",
            ));
        }
        if !found.is_some_and(|s| matches!(text(s, "type"), "string" | "boolean" | "integer")) {
            c.push(Cause::invalid(field.clone(), &value, "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."));
        }
        if !unique.insert(resolved.concat()) {
            c.push(Cause::duplicate(field, &value));
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS && !too_many_ok {
        c.push(Cause::too_many(path, unique.len(), MAX_SELECTABLE_FIELDS));
    }
}
