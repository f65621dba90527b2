//! A version's schema as upstream validates it (`spec.validation` or
//! `spec.versions[i].schema`): the root under a status subresource, the
//! structural invariants, and the OpenAPI walk over every subschema (types,
//! unsupported keywords, defaults, list and map semantics, validation rules).

use super::field_path::resolve_field_path;
use super::options::Opts;
use super::structural::{structural, unsupported, Level};
use super::{field, flag, list, non_empty_map, openapi_schema, props, text};
use crate::error::Cause;
use serde_json::{json, Value};
use std::collections::HashSet;

pub(super) const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Validates `spec.validation` or a version's `schema`.
pub(super) fn validate_validation(
    validation: Option<&Value>,
    status_enabled: bool,
    structural_required: bool,
    opts: &Opts,
    path: &str,
    c: &mut Vec<Cause>,
) {
    let Some(schema) = openapi_schema(validation) else {
        return;
    };
    let root = format!("{path}.openAPIV3Schema");
    let mut errs = Vec::new();
    // Status is validated by properties[status], so the root may hold little else.
    if status_enabled {
        status_root(schema, &root, &mut errs);
    }
    if flag(schema, "nullable") {
        errs.push(Cause::forbidden(
            format!("{root}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut unreadable = None;
    if structural_required {
        match unsupported(schema) {
            Some(e) => unreadable = Some(Cause::invalid(root.clone(), &json!(""), e)),
            None => {
                let mut s = Vec::new();
                structural(schema, Level::Root, &root, &mut s);
                // Upstream sorts these by their rendered text.
                s.sort_by_cached_key(|e| format!("{}: {}", e.field, e.message));
                errs.extend(s);
            }
        }
    }
    let walk = Walk {
        opts,
        no_defaults: None,
        in_meta: false,
    };
    walk.schema(schema, &root, true, &mut errs);
    // Unreadable schemas are mostly reported by the walk already.
    if errs.is_empty() {
        errs.extend(unreadable);
    }
    c.extend(errs);
}

fn status_root(schema: &Value, root: &str, c: &mut Vec<Cause>) {
    // Upstream's internal field order; the allowed ones are listed in the message.
    const FIELDS: &str = "id $schema $ref description type nullable format title default \
        maximum exclusiveMaximum minimum exclusiveMinimum maxLength minLength pattern maxItems \
        minItems uniqueItems multipleOf enum maxProperties minProperties required items allOf \
        oneOf anyOf not properties additionalProperties patternProperties dependencies \
        additionalItems definitions externalDocs example x-kubernetes-preserve-unknown-fields \
        x-kubernetes-embedded-resource x-kubernetes-int-or-string x-kubernetes-list-map-keys \
        x-kubernetes-list-type x-kubernetes-map-type x-kubernetes-validations";
    const ALLOWED: &str = "description type format title maximum exclusiveMaximum minimum \
        exclusiveMinimum maxLength minLength pattern maxItems minItems uniqueItems multipleOf \
        required items properties externalDocs example x-kubernetes-preserve-unknown-fields \
        x-kubernetes-validations";
    for key in FIELDS.split_whitespace() {
        // Go skips zero values: nil, "" and plain (non-pointer) false.
        let set = match schema.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Bool(b)) => *b || key == "x-kubernetes-preserve-unknown-fields",
            Some(_) => true,
        };
        if !set {
            continue;
        }
        if key == "type" {
            let ty = text(schema, "type");
            if ty != "object" {
                c.push(Cause::invalid(format!("{root}.type"), &json!(ty), r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#));
                return;
            }
        } else if !ALLOWED.split_whitespace().any(|a| a == key) {
            c.push(Cause::invalid(root, schema, "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled"));
            return;
        }
    }
}

/// Upstream's OpenAPI walk over every subschema: unsupported keywords,
/// extension consistency, list and map semantics, validation rules.
#[derive(Clone)]
struct Walk<'o> {
    opts: &'o Opts,
    /// Why defaults are forbidden here, if they are.
    no_defaults: Option<String>,
    /// Inside a resource's kind, apiVersion or metadata.
    in_meta: bool,
}

impl Walk<'_> {
    fn schema(&self, s: &Value, path: &str, is_root: bool, c: &mut Vec<Cause>) {
        let ty = text(s, "type");
        let at = |key: &str| format!("{path}.{key}");
        let forbidden = |key: &str, msg: &str| Cause::forbidden(at(key), msg);
        if self.opts.valid_type && !ty.is_empty() && !TYPES.contains(&ty) {
            c.push(Cause::not_supported(at("type"), &json!(ty), &TYPES));
        }
        if field(s, "default").is_some() {
            if let Some(reason) = &self.no_defaults {
                c.push(forbidden("default", &format!("must not be set {reason}")));
            }
        }
        for (set, key) in [
            (!text(s, "id").is_empty(), "id"),
            (field(s, "additionalItems").is_some(), "additionalItems"),
            (non_empty_map(s, "patternProperties"), "patternProperties"),
            (non_empty_map(s, "definitions"), "definitions"),
            (field(s, "dependencies").is_some(), "dependencies"),
            (field(s, "$ref").is_some(), "$ref"),
        ] {
            if set {
                c.push(forbidden(key, &format!("{key} is not supported")));
            }
        }
        let mut forbid = |key: &str, msg: &str| c.push(forbidden(key, msg));
        if ty == "null" {
            forbid(
                "type",
                "type cannot be set to null, use nullable as an alternative",
            );
        }
        let items = field(s, "items");
        if items
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            forbid("items", "items must be a schema object and not an array");
        }
        let embedded = flag(s, "x-kubernetes-embedded-resource");
        if self.in_meta && embedded {
            forbid(
                "x-kubernetes-embedded-resource",
                "must not be used inside of resource meta",
            );
        }
        if flag(s, "uniqueItems") {
            forbid(
                "uniqueItems",
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            );
        }
        // properties are for structs, additionalProperties for maps.
        if let Some(extra) = field(s, "additionalProperties") {
            if props(s).is_some_and(|p| !p.is_empty()) && extra != &json!(true) {
                forbid(
                    "additionalProperties",
                    "additionalProperties and properties are mutual exclusive",
                );
            }
            if extra.is_object() {
                let mut sub = self.clone();
                if self.in_meta {
                    sub.no_defaults =
                        Some("inside additionalProperties applying to object metadata".into());
                }
                sub.schema(extra, &at("additionalProperties"), false, c);
            }
        }
        for (k, p) in props(s).into_iter().flatten() {
            let mut sub = self.clone();
            if (is_root || embedded) && ["metadata", "kind", "apiVersion"].contains(&k.as_str()) {
                sub.in_meta = true;
                if is_root {
                    sub.no_defaults = Some(format!("in top-level {k}"));
                }
            }
            sub.schema(p, &format!("{path}.properties[{k}]"), false, c);
        }
        if let Some(not) = field(s, "not") {
            self.schema(not, &at("not"), false, c);
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for (i, x) in list(s, key).iter().enumerate() {
                self.schema(x, &format!("{path}.{key}[{i}]"), false, c);
            }
        }
        for (k, d) in s
            .get("definitions")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.schema(d, &format!("{path}.definitions[{k}]"), false, c);
        }
        match items {
            Some(Value::Array(xs)) => {
                for (i, x) in xs.iter().enumerate() {
                    self.schema(x, &format!("{path}.items[{i}]"), false, c);
                }
            }
            Some(x) => self.schema(x, &at("items"), false, c),
            None => {}
        }
        for (k, d) in s
            .get("dependencies")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if d.is_object() {
                self.schema(d, &format!("{path}.dependencies[{k}]"), false, c);
            }
        }
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(false)) {
            c.push(Cause::invalid(
                at("x-kubernetes-preserve-unknown-fields"),
                &json!(false),
                "must be true or undefined",
            ));
        }
        self.lists_and_maps(s, path, c);
        if self.opts.map_list_keys {
            map_set_items(s, path, c);
        }
        validation_rules(s, path, c);
    }

    fn lists_and_maps(&self, s: &Value, path: &str, c: &mut Vec<Cause>) {
        let ty = text(s, "type");
        let at = |key: &str| format!("{path}.{key}");
        let wrong_type = |want: &str, ext: &str| {
            let msg = format!("must be {want} if {ext} is specified");
            if ty.is_empty() {
                Cause::required_detail(at("type"), &msg)
            } else {
                Cause::invalid(at("type"), &json!(ty), msg)
            }
        };
        if let Some(map_type) = field(s, "x-kubernetes-map-type") {
            if ty != "object" {
                c.push(wrong_type("object", "x-kubernetes-map-type"));
            }
            let mt = map_type.as_str().unwrap_or("");
            if !["atomic", "granular"].contains(&mt) {
                c.push(Cause::not_supported(
                    at("x-kubernetes-map-type"),
                    &json!(mt),
                    &["atomic", "granular"],
                ));
            }
        }
        let list_type = field(s, "x-kubernetes-list-type").map(|l| l.as_str().unwrap_or(""));
        if list_type.is_some() && ty != "array" {
            c.push(wrong_type("array", "x-kubernetes-list-type"));
        } else if self.opts.atomic_set {
            atomic_set_items(s, path, c);
        }
        if let Some(lt) = list_type.filter(|lt| !["atomic", "set", "map"].contains(lt)) {
            c.push(Cause::not_supported(
                at("x-kubernetes-list-type"),
                &json!(lt),
                &["atomic", "set", "map"],
            ));
        }
        let keys: Vec<&str> = list(s, "x-kubernetes-list-map-keys")
            .iter()
            .map(|k| k.as_str().unwrap_or(""))
            .collect();
        let map_msg = "must be map if x-kubernetes-list-map-keys is non-empty";
        match list_type {
            _ if keys.is_empty() => {}
            None => c.push(Cause::required_detail(
                at("x-kubernetes-list-type"),
                map_msg,
            )),
            Some(lt) if lt != "map" => c.push(Cause::invalid(
                at("x-kubernetes-list-type"),
                &json!(lt),
                map_msg,
            )),
            Some(_) => {}
        }
        if list_type != Some("map") {
            return;
        }
        if keys.is_empty() {
            c.push(Cause::required_detail(
                at("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        let items = match field(s, "items") {
            None => {
                return c.push(Cause::required_detail(
                    at("items"),
                    "must have a schema if x-kubernetes-list-type is map",
                ))
            }
            Some(items) if !items.is_object() => {
                return c.push(Cause::invalid(
                    at("items"),
                    items,
                    "must only have a single schema if x-kubernetes-list-type is map",
                ))
            }
            Some(items) => items,
        };
        let item_type = text(items, "type");
        if item_type != "object" {
            c.push(Cause::invalid(
                format!("{path}.items.type"),
                &json!(item_type),
                "must be object if parent array's x-kubernetes-list-type is map",
            ));
            return;
        }
        let keys_value = json!(keys);
        let mut seen = HashSet::new();
        for k in &keys {
            match props(items).and_then(|p| p.get(*k)) {
                // Upstream shows the item's type here, not the key's.
                Some(p) if matches!(text(p, "type"), "array" | "object") => c.push(Cause::invalid(
                    format!("{path}.items.properties[{k}].type"),
                    &json!(item_type),
                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                )),
                Some(_) => {}
                None => c.push(Cause::invalid(
                    at("x-kubernetes-list-map-keys"),
                    &keys_value,
                    "entries must all be names of item properties",
                )),
            }
            if !seen.insert(*k) {
                c.push(Cause::invalid(
                    at("x-kubernetes-list-map-keys"),
                    &keys_value,
                    "must not contain duplicate entries",
                ));
            }
        }
    }
}

/// Items of a set must be atomic, or set membership is ill-defined.
pub(super) fn atomic_set_items(s: &Value, path: &str, c: &mut Vec<Cause>) {
    let Some(items) = field(s, "items").filter(|i| i.is_object()) else {
        return;
    };
    if text(s, "x-kubernetes-list-type") != "set" {
        return;
    }
    let msg = "must be atomic as item of a list with x-kubernetes-list-type=set";
    let list_type = field(items, "x-kubernetes-list-type");
    match text(items, "type") {
        "array" if list_type.is_some_and(|l| l != "atomic") => c.push(Cause::invalid(
            format!("{path}.items.x-kubernetes-list-type"),
            list_type.unwrap_or(&Value::Null),
            msg,
        )),
        // Upstream shows the items' list type here.
        "object" if text(items, "x-kubernetes-map-type") != "atomic" => c.push(Cause::invalid(
            format!("{path}.items.x-kubernetes-map-type"),
            list_type.unwrap_or(&Value::Null),
            msg,
        )),
        _ => {}
    }
}

/// Set and map items may not be null, and map keys must always have a value.
pub(super) fn map_set_items(s: &Value, path: &str, c: &mut Vec<Cause>) {
    let Some(items) = field(s, "items").filter(|i| i.is_object()) else {
        return;
    };
    let list_type = text(s, "x-kubernetes-list-type");
    if !["set", "map"].contains(&list_type) || field(s, "x-kubernetes-list-type").is_none() {
        return;
    }
    if flag(items, "nullable") {
        c.push(Cause::forbidden(
            format!("{path}.items.nullable"),
            format!("cannot be nullable when x-kubernetes-list-type is {list_type}"),
        ));
    }
    if list_type != "map" {
        return;
    }
    let required_keys = list(items, "required");
    for k in list(s, "x-kubernetes-list-map-keys")
        .iter()
        .filter_map(Value::as_str)
    {
        let Some(p) = props(items).and_then(|p| p.get(k)) else {
            continue;
        };
        let at = format!("{path}.items.properties[{k}]");
        if !required_keys.iter().any(|r| r == k) && field(p, "default").is_none() {
            c.push(Cause::required_detail(format!("{at}.default"), "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"));
        }
        if flag(p, "nullable") {
            c.push(Cause::forbidden(
                format!("{at}.nullable"),
                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
            ));
        }
    }
}

/// The static checks of x-kubernetes-validations; CEL compilation and cost
/// estimation are not done here.
fn validation_rules(s: &Value, path: &str, c: &mut Vec<Cause>) {
    const REASONS: [&str; 4] = [
        "FieldValueDuplicate",
        "FieldValueForbidden",
        "FieldValueInvalid",
        "FieldValueRequired",
    ];
    let newline = |s: &str| s.contains(['\n', '\r']);
    for (i, rule) in list(s, "x-kubernetes-validations").iter().enumerate() {
        let at = |key: &str| format!("{path}.x-kubernetes-validations[{i}].{key}");
        let (expr, msg) = (text(rule, "rule"), text(rule, "message"));
        let (expr_t, msg_t) = (expr.trim(), msg.trim());
        if expr_t.is_empty() {
            c.push(Cause::required_detail(at("rule"), "rule is not specified"));
        } else if !msg.is_empty() && msg_t.is_empty() {
            c.push(Cause::invalid(
                at("message"),
                &json!(msg),
                "must be non-empty if specified",
            ));
        } else if newline(msg_t) {
            c.push(Cause::invalid(
                at("message"),
                &json!(msg),
                "must not contain line breaks",
            ));
        } else if newline(expr_t) && msg_t.is_empty() {
            c.push(Cause::required_detail(
                at("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        let msg_expr = text(rule, "messageExpression");
        if !msg_expr.is_empty() && msg_expr.trim().is_empty() {
            c.push(Cause::required_detail(
                at("messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = field(rule, "reason") {
            let reason = reason.as_str().unwrap_or("");
            if !REASONS.contains(&reason) {
                c.push(Cause::not_supported(at("reason"), &json!(reason), &REASONS));
            }
        }
        let fp = text(rule, "fieldPath");
        if !fp.is_empty() && fp.trim().is_empty() {
            c.push(Cause::invalid(
                at("fieldPath"),
                &json!(fp),
                "must be non-empty if specified",
            ));
        }
        if newline(fp) {
            c.push(Cause::invalid(
                at("fieldPath"),
                &json!(fp),
                "must not contain line breaks",
            ));
        }
        if !fp.is_empty() && unsupported(s).is_none() && resolve_field_path(fp, s, true).is_err() {
            c.push(Cause::invalid(
                at("fieldPath"),
                &json!(fp),
                "must be a valid path",
            ));
        }
    }
}
