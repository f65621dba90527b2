//! Structural schemas: whether upstream can read a schema as one at all
//! (`unsupported`), its invariants on properties, items and
//! additionalProperties, and what allOf/anyOf/oneOf/not may hold.

use super::{field, flag, list, non_empty_map, props, text};
use crate::error::Cause;
use serde_json::{json, Map, Value};

/// Every subschema of `s`, depth first, until `pred` holds.
pub(super) fn schema_any(s: &Value, pred: &dyn Fn(&Value) -> bool) -> bool {
    if !s.is_object() {
        return false;
    }
    if pred(s) {
        return true;
    }
    let one = |key: &str| field(s, key).is_some_and(|x| schema_any(x, pred));
    let many = |key: &str| match field(s, key) {
        Some(Value::Array(xs)) => xs.iter().any(|x| schema_any(x, pred)),
        Some(Value::Object(m)) => m.values().any(|x| schema_any(x, pred)),
        _ => false,
    };
    ["items", "not", "additionalProperties", "additionalItems"]
        .iter()
        .any(|k| one(k))
        || [
            "items",
            "allOf",
            "anyOf",
            "oneOf",
            "properties",
            "patternProperties",
            "definitions",
            "dependencies",
        ]
        .iter()
        .any(|k| many(k))
}

pub(super) fn has_extensions(s: &Value) -> bool {
    flag(s, "x-kubernetes-embedded-resource")
        || field(s, "x-kubernetes-preserve-unknown-fields").is_some()
        || flag(s, "x-kubernetes-int-or-string")
        || !list(s, "x-kubernetes-list-map-keys").is_empty()
        || field(s, "x-kubernetes-list-type").is_some()
        || !list(s, "x-kubernetes-validations").is_empty()
}

/// Why upstream cannot read `s` as a structural schema at all, if it cannot.
pub(super) fn unsupported(s: &Value) -> Option<String> {
    let own = if !text(s, "id").is_empty() {
        Some("'id'")
    } else if !text(s, "$schema").is_empty() {
        Some("'schema'")
    } else if !text(s, "$ref").is_empty() {
        Some("'$ref'")
    } else if non_empty_map(s, "patternProperties") {
        Some("'patternProperties'")
    } else if non_empty_map(s, "dependencies") {
        Some("'dependencies'")
    } else if field(s, "additionalItems").is_some() {
        Some("'additionalItems'")
    } else if non_empty_map(s, "definitions") {
        Some("'definitions'")
    } else {
        None
    };
    if let Some(what) = own {
        return Some(format!("OpenAPIV3Schema {what} is not supported"));
    }
    let nested = field(s, "not")
        .into_iter()
        .chain(["allOf", "anyOf", "oneOf"].iter().flat_map(|k| list(s, k)));
    if let Some(e) = nested.filter_map(unsupported).next() {
        return Some(e);
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(false)) {
        return Some(
            "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
                .into(),
        );
    }
    match field(s, "items") {
        Some(Value::Array(a)) if !a.is_empty() => {
            return Some("OpenAPIV3Schema 'items' must be a schema, but is an array".into())
        }
        Some(items) if items.is_object() => {
            if let Some(e) = unsupported(items) {
                return Some(e);
            }
        }
        _ => {}
    }
    let children = props(s)
        .into_iter()
        .flat_map(|p| p.values())
        .chain(field(s, "additionalProperties").filter(|a| a.is_object()));
    children.filter_map(unsupported).next()
}

pub(super) fn non_structural(s: &Value) -> bool {
    let mut c = Vec::new();
    unsupported(s).is_some() || {
        structural(s, Level::Root, "", &mut c);
        !c.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Level {
    Root,
    Item,
    Field,
}

/// Upstream's structural-schema invariants on the schema proper (properties,
/// items, additionalProperties); allOf/anyOf/oneOf/not go to `junctors`.
pub(super) fn structural(s: &Value, lvl: Level, path: &str, c: &mut Vec<Cause>) {
    let ty = text(s, "type");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let items = field(s, "items").filter(|i| i.is_object());
    if ty == "array" && field(s, "items").is_none() {
        c.push(Cause::required_detail(
            format!("{path}.items"),
            "must be specified",
        ));
    }
    if let Some(items) = items {
        structural(items, Level::Item, &format!("{path}.items"), c);
    }
    for (k, p) in props(s).into_iter().flatten() {
        structural(p, Level::Field, &format!("{path}.properties[{k}]"), c);
    }
    if let Some(extra) = field(s, "additionalProperties") {
        if lvl == Level::Root {
            c.push(Cause::forbidden(
                format!("{path}.additionalProperties"),
                "must not be used at the root",
            ));
        }
        if extra.is_object() {
            structural(
                extra,
                Level::Field,
                &format!("{path}.additionalProperties"),
                c,
            );
        }
    }
    if int_or_string && preserve {
        c.push(Cause::invalid(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        c.push(Cause::invalid(
            format!("{path}.x-kubernetes-embedded-resource"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    // The two int-or-string shapes may name types inside anyOf.
    let any_of_pattern = |x: &Value| {
        let only_type = |v: &Value, t: &str| {
            v.as_object().is_some_and(|m| {
                m.iter()
                    .all(|(k, v)| if k == "type" { v == t } else { v.is_null() })
            })
        };
        let any = list(x, "anyOf");
        any.len() == 2 && only_type(&any[0], "integer") && only_type(&any[1], "string")
    };
    let skip_first_all_of = list(s, "allOf").first().is_some_and(any_of_pattern);
    junctors(s, any_of_pattern(s), skip_first_all_of, path, c);

    let type_field = format!("{path}.type");
    if embedded && ty != "object" {
        let msg = "must be object if x-kubernetes-embedded-resource is true";
        c.push(if ty.is_empty() {
            Cause::required_detail(type_field.clone(), msg)
        } else {
            Cause::invalid(type_field.clone(), &json!(ty), msg)
        });
    } else if ty.is_empty() && !int_or_string && !preserve {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        c.push(Cause::required_detail(type_field.clone(), msg));
    }
    if embedded && field(s, "additionalProperties").is_some() {
        c.push(Cause::forbidden(
            format!("{path}.additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        c.push(Cause::invalid(
            type_field,
            &json!(ty),
            "must be object at the root",
        ));
    }
    // A resource's own kind, apiVersion and metadata keep their meaning.
    let resource = lvl == Level::Root || embedded;
    let properties = props(s);
    let prop = |k: &str| properties.and_then(|p| p.get(k));
    for key in ["kind", "apiVersion"] {
        if let Some(p) = prop(key).filter(|_| resource) {
            if text(p, "type") != "string" {
                c.push(Cause::invalid(
                    format!("{path}.properties[{key}].type"),
                    &json!(text(p, "type")),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = prop("metadata") {
        let field = format!("{path}.properties[metadata]");
        if resource && text(meta, "type") != "object" {
            c.push(Cause::invalid(
                format!("{field}.type"),
                &json!(text(meta, "type")),
                "must be object",
            ));
        }
        if lvl == Level::Root && restricts_metadata(meta) {
            c.push(Cause::forbidden(field, "must not specify anything other than name and generateName, but metadata is implicitly specified"));
        }
    }
    if embedded && !preserve && properties.is_none_or(Map::is_empty) {
        c.push(Cause::required_detail(
            format!("{path}.properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// Whether a root `metadata` schema says more than its type, a default and
/// name/generateName (the API server owns the rest of ObjectMeta).
fn restricts_metadata(meta: &Value) -> bool {
    let Some(m) = meta.as_object() else {
        return false;
    };
    m.iter().any(|(k, v)| match k.as_str() {
        "type" | "default" => false,
        "properties" => v.as_object().is_some_and(|p| {
            !p.is_empty() && !p.keys().all(|k| k == "name" || k == "generateName")
        }),
        _ => !matches!(v, Value::Null | Value::Bool(false)) && v.as_str() != Some(""),
    })
}

/// Value validations under allOf/anyOf/oneOf/not may only restrict values:
/// no types, defaults, descriptions or extensions there.
fn junctors(s: &Value, skip_any_of: bool, skip_first_all_of: bool, path: &str, c: &mut Vec<Cause>) {
    if !skip_any_of {
        for (i, x) in list(s, "anyOf").iter().enumerate() {
            nested(x, false, &format!("{path}.anyOf[{i}]"), c);
        }
    }
    for (i, x) in list(s, "allOf").iter().enumerate() {
        nested(
            x,
            skip_first_all_of && i == 0,
            &format!("{path}.allOf[{i}]"),
            c,
        );
    }
    for (i, x) in list(s, "oneOf").iter().enumerate() {
        nested(x, false, &format!("{path}.oneOf[{i}]"), c);
    }
    if let Some(not) = field(s, "not") {
        nested(not, false, &format!("{path}.not"), c);
    }
}

fn nested(v: &Value, skip_any_of: bool, path: &str, c: &mut Vec<Cause>) {
    junctors(v, skip_any_of, false, path, c);
    if let Some(items) = field(v, "items").filter(|i| i.is_object()) {
        nested(items, false, &format!("{path}.items"), c);
    }
    for (k, p) in props(v).into_iter().flatten() {
        nested(p, false, &format!("{path}.properties[{k}]"), c);
    }
    let mut forbid = |key: &str, msg: &str| c.push(Cause::forbidden(format!("{path}.{key}"), msg));
    if !text(v, "type").is_empty() {
        forbid("type", "must be empty to be structural");
    }
    // additionalProperties: false leaves nothing to forbid.
    if field(v, "additionalProperties").is_some_and(|a| a != &json!(false)) {
        forbid("additionalProperties", "must be undefined to be structural");
    }
    if field(v, "default").is_some() {
        forbid("default", "must be undefined to be structural");
    }
    for key in ["title", "description"] {
        if !text(v, key).is_empty() {
            forbid(key, "must be empty to be structural");
        }
    }
    for key in [
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if flag(v, key) {
            forbid(key, "must be false to be structural");
        }
    }
    if !list(v, "x-kubernetes-list-map-keys").is_empty() {
        forbid(
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        );
    }
    for key in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if field(v, key).is_some() {
            forbid(key, "must be undefined to be structural");
        }
    }
    if !list(v, "x-kubernetes-validations").is_empty() {
        forbid("x-kubernetes-validations", "must be empty to be structural");
    }
    if props(v).is_some_and(|p| p.contains_key("metadata")) {
        c.push(Cause::forbidden(
            format!("{path}.properties[metadata]"),
            "must not be specified in a nested context",
        ));
    }
}
