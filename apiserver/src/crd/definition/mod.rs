//! CustomResourceDefinition (apiextensions.k8s.io/v1) defaulting and
//! validation, worded as upstream's apiextensions-apiserver so kubectl users
//! see the field paths and messages they know.
//!
//! Upstream validates the internal form of a CRD, which its v1 conversion
//! builds by moving per-version `schema`, `subresources`,
//! `additionalPrinterColumns` and `selectableFields` up to the spec when every
//! version carries the same value. Error paths follow that: a single-version
//! CRD reports `spec.validation.openAPIV3Schema…`, versions with differing
//! schemas report `spec.versions[i].schema.openAPIV3Schema…`, and a webhook
//! client config is `spec.conversion.webhookClientConfig`.
//!
//! This module holds the public entry points and the accessors and cause
//! builders the rules share; the rules live by concern in `names` (kinds,
//! plurals, short names), `versions` (the spec and its versions, stored
//! versions), `options` (what an update relaxes), `approval` (the API review
//! annotation of protected groups), `conversion`, `columns` (subresources,
//! printer columns, selectable fields), `field_path` (field paths through a
//! schema), `structural` (structural-schema invariants) and `openapi` (the
//! walk over every subschema).

mod approval;
mod columns;
mod conversion;
mod field_path;
mod names;
mod openapi;
mod options;
mod structural;
mod versions;

#[cfg(test)]
mod tests;

use crate::error::Cause;
use approval::validate_approval;
use names::{validate_name, validate_names};
use options::Opts;
use serde_json::{json, Map, Value};
use versions::{validate_spec, validate_stored_versions};

/// Upstream's v1 defaulting: singular and listKind from kind, a `None`
/// conversion, port 443 for a webhook service, and the storage version as
/// the first stored version.
pub fn apply_defaults(crd: &mut Value) {
    let Some(obj) = crd.as_object_mut() else {
        return;
    };
    let spec = obj.entry("spec").or_insert(Value::Null);
    if spec.is_null() {
        *spec = json!({});
    }
    if let Some(spec) = spec.as_object_mut() {
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !kind.is_empty() {
                if is_blank(names.get("singular")) {
                    names.insert("singular".into(), json!(kind.to_lowercase()));
                }
                if is_blank(names.get("listKind")) {
                    names.insert("listKind".into(), json!(format!("{kind}List")));
                }
            }
        }
        if spec.get("conversion").is_none_or(Value::is_null) {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
        let service = spec
            .get_mut("conversion")
            .and_then(|c| c.pointer_mut("/webhook/clientConfig/service"))
            .and_then(Value::as_object_mut);
        if let Some(service) = service {
            if service.get("port").is_none_or(Value::is_null) {
                service.insert("port".into(), json!(443));
            }
        }
    }
    let storage = storage_version(obj.get("spec").unwrap_or(&Value::Null)).map(str::to_string);
    if let Some(storage) = storage {
        if let Some(status) = obj
            .entry("status")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            if status
                .get("storedVersions")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                status.insert("storedVersions".into(), json!([storage]));
            }
        }
    }
}

/// The status a spec write stores, as upstream's strategy prepares it before
/// validating: status is not written through the main resource, so a create
/// starts empty and an update keeps the stored status; either way the
/// current storage version joins `storedVersions`.
pub fn prepare_status(crd: &mut Value, old: Option<&Value>) {
    let mut status = match old {
        Some(old) => old.get("status").cloned().unwrap_or_else(|| json!({})),
        None => json!({"acceptedNames": {"plural": "", "kind": ""}}),
    };
    let storage = storage_version(crd.get("spec").unwrap_or(&Value::Null)).map(str::to_string);
    if let (Some(storage), Some(map)) = (storage, status.as_object_mut()) {
        let stored = map.entry("storedVersions").or_insert_with(|| json!([]));
        if !stored.is_array() {
            *stored = json!([]);
        }
        if let Some(list) = stored.as_array_mut() {
            if !list.iter().any(|v| v.as_str() == Some(storage.as_str())) {
                list.push(json!(storage));
            }
        }
    }
    if let Some(obj) = crd.as_object_mut() {
        obj.insert("status".into(), status);
    }
}

/// Upstream's ValidateCustomResourceDefinition (`old` = None) and
/// ValidateCustomResourceDefinitionUpdate. Expects `status` as
/// `prepare_status` leaves it. Generic metadata rules (name syntax, labels)
/// are the registry's; this adds the CRD-specific name rule.
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    let spec = crd.get("spec").unwrap_or(&Value::Null);
    if old.is_none() {
        validate_name(crd, spec, &mut c);
    }
    let old_spec = old.map(|o| o.get("spec").unwrap_or(&Value::Null));
    let opts = Opts::new(old_spec).with_too_many_fields(spec, old_spec);
    validate_spec(spec, &opts, &mut c);
    if let (Some(old), Some(old_spec)) = (old, old_spec) {
        // The resource name derives from group and plural, and storage from
        // scope and kind once the CRD is served.
        let mut immutable = vec!["group", "names/plural"];
        if super::condition_true(old, "Established") {
            immutable.splice(0..0, ["scope", "names/kind"]);
        }
        for key in immutable {
            let new = spec.pointer(&format!("/{key}")).unwrap_or(&Value::Null);
            if new != old_spec.pointer(&format!("/{key}")).unwrap_or(&Value::Null) {
                let field = format!("spec.{}", key.replace('/', "."));
                c.push(Cause::invalid(field, new, "field is immutable"));
            }
        }
    }
    let status = crd.get("status").unwrap_or(&Value::Null);
    validate_names(
        status.get("acceptedNames").unwrap_or(&Value::Null),
        "status.acceptedNames",
        &mut c,
    );
    validate_stored_versions(status, list(spec, "versions"), &mut c);
    validate_approval(crd, old, &mut c);
    let old_preserves = old_spec.is_some_and(|s| flag(s, "preserveUnknownFields"));
    if flag(spec, "preserveUnknownFields") && !old_preserves {
        c.push(Cause::invalid(
            "spec.preserveUnknownFields",
            &json!(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    c
}

/// Upstream's ValidateUpdateCustomResourceDefinitionStatus: a status write
/// checks the accepted names only (storedVersions are checked against the
/// versions on spec writes, by `validate`).
pub fn validate_status(crd: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    let names = crd.pointer("/status/acceptedNames").unwrap_or(&Value::Null);
    validate_names(names, "status.acceptedNames", &mut c);
    c
}

// ---- small accessors that never panic on unexpected shapes ----

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A set field: present and not null (Go's non-nil pointer).
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn props(v: &Value) -> Option<&Map<String, Value>> {
    v.get("properties").and_then(Value::as_object)
}

fn is_blank(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_none_or(str::is_empty)
}

fn storage_version(spec: &Value) -> Option<&str> {
    list(spec, "versions")
        .iter()
        .find(|v| flag(v, "storage"))
        .map(|v| text(v, "name"))
}

fn non_empty_map(s: &Value, key: &str) -> bool {
    s.get(key)
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
}

// ---- a string field that is required and one of a fixed set ----

fn enum_string(field: &str, value: &str, accepted: &[&str], c: &mut Vec<Cause>) {
    if value.is_empty() {
        c.push(Cause::required(field));
    } else if !accepted.contains(&value) {
        c.push(Cause::not_supported(field, &json!(value), accepted));
    }
}

// ---- the internal form: per-version fields hoisted to the spec ----

/// Which per-version fields upstream's conversion moves up to the spec,
/// because every version has the same value.
struct Hoisted {
    schema: bool,
    subresources: bool,
    columns: bool,
    selectable: bool,
}

impl Hoisted {
    fn new(versions: &[Value]) -> Self {
        let same = |key: &str| {
            let first = versions.first().and_then(|v| per_version(v, key));
            !versions.is_empty() && versions.iter().all(|v| per_version(v, key) == first)
        };
        Hoisted {
            schema: same("schema"),
            subresources: same("subresources"),
            columns: same("additionalPrinterColumns"),
            selectable: same("selectableFields"),
        }
    }
}

/// A per-version field; an empty list counts as unset, as Go's semantic
/// equality treats nil and empty slices alike.
fn per_version<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    field(v, key).filter(|x| x.as_array().is_none_or(|a| !a.is_empty()))
}

fn openapi_schema(validation: Option<&Value>) -> Option<&Value> {
    validation.and_then(|s| field(s, "openAPIV3Schema"))
}

/// The versions' own schemas, of those that have one.
fn version_schemas(versions: &[Value]) -> Vec<&Value> {
    versions
        .iter()
        .filter_map(|v| openapi_schema(v.get("schema")))
        .collect()
}
