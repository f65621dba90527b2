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

use crate::error::{Cause, CauseKind};
use serde_json::{json, Map, Value};
use skiff_machinery::names;
use std::collections::HashSet;

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
        if is_established(old) {
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

fn is_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| text(c, "type") == "Established" && text(c, "status") == "True")
        })
}

// ---- causes the shared constructors do not cover ----

fn required(field: impl Into<String>, detail: &str) -> Cause {
    Cause {
        message: format!("Required value: {detail}"),
        ..Cause::required(field)
    }
}

fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Cause {
    Cause {
        kind: CauseKind::TooMany,
        field: field.into(),
        message: format!("Too many: {actual}: must have at most {max} items"),
    }
}

fn enum_string(field: &str, value: &str, accepted: &[&str], c: &mut Vec<Cause>) {
    if value.is_empty() {
        c.push(Cause::required(field));
    } else if !accepted.contains(&value) {
        c.push(Cause::not_supported(field, &json!(value), accepted));
    }
}

// ---- DNS names with upstream's separate length and format messages ----

/// Upstream's regex `[a-z]([-a-z0-9]*[a-z0-9])?`, which has no length limit.
fn dns1035_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn dns1035_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !dns1035_shape(s) {
        errs.push(names::DNS1035_LABEL_MSG.to_string());
    }
    errs
}

fn subdomain_errors(s: &str) -> Vec<String> {
    let label = |l: &str| {
        let b = l.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter().all(|c| alnum(c) || *c == b'-')
    };
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(label) {
        errs.push(names::DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

// ---- metadata, names, versions ----

fn validate_name(crd: &Value, spec: &Value, c: &mut Vec<Cause>) {
    let wanted = format!("{}.{}", text(&spec["names"], "plural"), text(spec, "group"));
    for key in ["generateName", "name"] {
        let name = crd
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !name.is_empty() && name != wanted {
            c.push(Cause::invalid(
                format!("metadata.{key}"),
                &json!(name),
                r#"must be spec.names.plural+"."+spec.group"#,
            ));
        }
    }
}

fn validate_names(names: &Value, path: &str, c: &mut Vec<Cause>) {
    for key in ["plural", "singular"] {
        let v = text(names, key);
        let errs = dns1035_errors(v);
        if !v.is_empty() && !errs.is_empty() {
            c.push(Cause::invalid(
                format!("{path}.{key}"),
                &json!(v),
                errs.join(","),
            ));
        }
    }
    // Kinds are CamelCase; only their lowercase form must be a label.
    for key in ["kind", "listKind"] {
        let v = text(names, key);
        let errs = dns1035_errors(&v.to_lowercase());
        if !v.is_empty() && !errs.is_empty() {
            let msg = format!(
                "may have mixed case, but should otherwise match: {}",
                errs.join(",")
            );
            c.push(Cause::invalid(format!("{path}.{key}"), &json!(v), msg));
        }
    }
    let labels = |key: &str, c: &mut Vec<Cause>| {
        for (i, v) in list(names, key).iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            let errs = dns1035_errors(v);
            if !errs.is_empty() {
                c.push(Cause::invalid(
                    format!("{path}.{key}[{i}]"),
                    &json!(v),
                    errs.join(","),
                ));
            }
        }
    };
    labels("shortNames", c);
    let kind = text(names, "kind");
    if !kind.is_empty() && kind == text(names, "listKind") {
        c.push(Cause::invalid(
            format!("{path}.listKind"),
            &json!(kind),
            "kind and listKind may not be the same",
        ));
    }
    labels("categories", c);
}

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

/// Rules upstream relaxes on update when the stored CRD already broke them,
/// so old objects stay writable.
struct Opts {
    schema_required: bool,
    structural: bool,
    valid_type: bool,
    atomic_set: bool,
    map_list_keys: bool,
    recognized_review_version: bool,
    /// Version names ("" for the shared list) whose more than 8 selectable
    /// fields were already stored unchanged.
    too_many_fields_ok: HashSet<String>,
}

impl Opts {
    fn new(old: Option<&Value>) -> Self {
        let Some(old) = old else {
            return Opts {
                schema_required: true,
                structural: true,
                valid_type: true,
                atomic_set: true,
                map_list_keys: true,
                recognized_review_version: true,
                too_many_fields_ok: HashSet::new(),
            };
        };
        let versions = list(old, "versions");
        let schemas: Vec<&Value> = versions
            .iter()
            .filter_map(|v| openapi_schema(v.get("schema")))
            .collect();
        let old_has = |pred: &dyn Fn(&Value) -> bool| schemas.iter().any(|s| schema_any(s, pred));
        let review = old
            .pointer("/conversion/webhook/conversionReviewVersions")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        Opts {
            schema_required: versions
                .iter()
                .all(|v| openapi_schema(v.get("schema")).is_some()),
            structural: !schemas.iter().any(|s| non_structural(s)),
            valid_type: !old_has(&|s| {
                let t = text(s, "type");
                !t.is_empty() && !TYPES.contains(&t)
            }),
            atomic_set: !old_has(&|s| {
                let mut c = Vec::new();
                atomic_set_items(s, "", &mut c);
                !c.is_empty()
            }),
            map_list_keys: !old_has(&|s| {
                let mut c = Vec::new();
                map_set_items(s, "", &mut c);
                !c.is_empty()
            }),
            recognized_review_version: review.is_empty()
                || review
                    .iter()
                    .any(|v| ACCEPTED_REVIEW.contains(&v.as_str().unwrap_or(""))),
            too_many_fields_ok: HashSet::new(),
        }
    }

    fn with_too_many_fields(mut self, spec: &Value, old: Option<&Value>) -> Self {
        let Some(old) = old else { return self };
        let (new, old) = (list(spec, "versions"), list(old, "versions"));
        let (hn, ho) = (Hoisted::new(new), Hoisted::new(old));
        let long = |f: Option<&Value>| f.and_then(Value::as_array).is_some_and(|a| a.len() > 8);
        // Which list each version has after hoisting; None for hoisted ones.
        let own = |v: &Value, hoisted: bool| {
            (!hoisted)
                .then(|| per_version(v, "selectableFields").cloned())
                .flatten()
        };
        let shared = |vs: &[Value], hoisted: bool| {
            vs.first()
                .filter(|_| hoisted)
                .and_then(|v| per_version(v, "selectableFields").cloned())
        };
        let old_shared = shared(old, ho.selectable);
        if long(old_shared.as_ref()) && old_shared == shared(new, hn.selectable) {
            self.too_many_fields_ok.insert(String::new());
        }
        for v in new {
            let name = text(v, "name");
            let Some(o) = old.iter().find(|o| text(o, "name") == name) else {
                continue;
            };
            let old_fields = own(o, ho.selectable);
            if long(old_fields.as_ref()) && old_fields == own(v, hn.selectable) {
                self.too_many_fields_ok.insert(name.to_string());
            }
        }
        self
    }
}

fn validate_spec(spec: &Value, opts: &Opts, c: &mut Vec<Cause>) {
    let group = text(spec, "group");
    if group.is_empty() {
        c.push(Cause::required("spec.group"));
    } else if let errs @ [_, ..] = subdomain_errors(group).as_slice() {
        c.push(Cause::invalid("spec.group", &json!(group), errs.join(",")));
    } else if !group.contains('.') {
        let msg = "should be a domain with at least one dot";
        c.push(Cause::invalid("spec.group", &json!(group), msg));
    }
    let scope = text(spec, "scope");
    enum_string("spec.scope", scope, &["Cluster", "Namespaced"], c);

    let versions = list(spec, "versions");
    let preserve = flag(spec, "preserveUnknownFields");
    for (i, v) in versions.iter().enumerate() {
        if openapi_schema(v.get("schema")).is_some() {
            continue;
        }
        let field = format!("spec.versions[{i}].schema.openAPIV3Schema");
        if opts.schema_required {
            c.push(Cause::required(field));
        } else if !preserve && flag(v, "served") {
            c.push(required(field, "because otherwise all fields are pruned"));
        }
    }
    let schemas: Vec<&Value> = versions
        .iter()
        .filter_map(|v| openapi_schema(v.get("schema")))
        .collect();
    let defaults = schemas
        .iter()
        .any(|s| schema_any(s, &|n| field(n, "default").is_some()));
    if defaults && preserve {
        c.push(Cause::invalid(
            "spec.preserveUnknownFields",
            &json!(true),
            "must be false in order to use defaults in the schema",
        ));
    }
    // Pruning, defaults and Kubernetes extensions all need structural schemas.
    let structural = opts.structural
        || !preserve
        || defaults
        || schemas.iter().any(|s| schema_any(s, &has_extensions));

    let hoisted = Hoisted::new(versions);
    validate_versions(spec, &hoisted, structural, opts, c);

    let names = spec.get("names").unwrap_or(&Value::Null);
    for key in ["plural", "singular", "kind", "listKind"] {
        if text(names, key).is_empty() {
            c.push(Cause::required(format!("spec.names.{key}")));
        }
    }
    validate_names(names, "spec.names", c);

    // What the versions share, validated once at the spec level.
    let shared = |key: &str, hoisted: bool| {
        versions
            .first()
            .filter(|_| hoisted)
            .and_then(|v| per_version(v, key))
    };
    let any_status = versions
        .iter()
        .any(|v| field(v, "subresources").is_some_and(|s| field(s, "status").is_some()));
    let validation = shared("schema", hoisted.schema);
    let path = "spec.validation";
    validate_validation(validation, any_status, structural, opts, path, c);
    let subresources = shared("subresources", hoisted.subresources);
    validate_subresources(subresources, "spec.subresources", c);
    let columns = shared("additionalPrinterColumns", hoisted.columns);
    for (j, col) in columns
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_column(col, &format!("spec.additionalPrinterColumns[{j}]"), c);
    }
    if let Some(fields) = shared("selectableFields", hoisted.selectable) {
        const FIELD: &str = "spec.selectableFields";
        match validation {
            None => c.push(Cause::invalid(
                FIELD,
                &json!(""),
                "may only be set when validations.schema is included",
            )),
            Some(v) => {
                let schema = openapi_schema(Some(v)).unwrap_or(&Value::Null);
                let ok = opts.too_many_fields_ok.contains("");
                validate_selectable(fields, schema, FIELD, "spec.schema.openAPIV3Schema", ok, c)
            }
        }
    }

    if let Some(conversion) = field(spec, "conversion") {
        let strategy = text(conversion, "strategy");
        if strategy != "None" && preserve {
            c.push(Cause::invalid(
                "spec.conversion.strategy",
                &json!(strategy),
                "must be None if spec.preserveUnknownFields is true",
            ));
        }
        validate_conversion(conversion, opts.recognized_review_version, c);
    }
}

/// Each version's name and own (not hoisted) fields, then the rules over all.
fn validate_versions(
    spec: &Value,
    hoisted: &Hoisted,
    structural: bool,
    opts: &Opts,
    c: &mut Vec<Cause>,
) {
    let versions = list(spec, "versions");
    let mut seen = HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = text(v, "name");
        seen.insert(name);
        if let errs @ [_, ..] = dns1035_errors(name).as_slice() {
            let field = format!("{path}.name");
            c.push(Cause::invalid(field, &json!(name), errs.join(",")));
        }
        validate_deprecation(v, &path, c);
        // Upstream looks the status subresource up by name: the first wins.
        let named = versions.iter().find(|x| text(x, "name") == name);
        let status = named
            .and_then(|x| field(x, "subresources"))
            .is_some_and(|s| field(s, "status").is_some());
        let own = |key: &str, shared: bool| if shared { None } else { per_version(v, key) };
        let schema = own("schema", hoisted.schema);
        let schema_path = format!("{path}.schema");
        validate_validation(schema, status, structural, opts, &schema_path, c);
        let subresources = own("subresources", hoisted.subresources);
        validate_subresources(subresources, &format!("{path}.subresources"), c);
        let columns = own("additionalPrinterColumns", hoisted.columns);
        for (j, col) in columns
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            validate_column(col, &format!("{path}.additionalPrinterColumns[{j}]"), c);
        }
        if let Some(fields) = own("selectableFields", hoisted.selectable) {
            let field = format!("{path}.selectableFields");
            match openapi_schema(schema) {
                None => c.push(Cause::invalid(
                    field,
                    &json!(""),
                    "may only be set when `version.schema.openAPIV3Schema` is not included",
                )),
                Some(s) => {
                    let ok = opts.too_many_fields_ok.contains(name);
                    let schema_path = format!("{schema_path}.openAPIV3Schema");
                    validate_selectable(fields, s, &field, &schema_path, ok, c)
                }
            }
        }
    }
    let value = spec.get("versions").cloned().unwrap_or(Value::Null);
    if seen.len() < versions.len() {
        let msg = "must contain unique version names";
        c.push(Cause::invalid("spec.versions", &value, msg));
    }
    if versions.iter().filter(|v| flag(v, "storage")).count() != 1 {
        let msg = "must have exactly one version marked as storage version";
        c.push(Cause::invalid("spec.versions", &value, msg));
    }
    // The internal form's spec.version is the first version's name.
    let first = versions.first().map_or("", |v| text(v, "name"));
    if let errs @ [_, ..] = dns1035_errors(first).as_slice() {
        if !first.is_empty() {
            c.push(Cause::invalid(
                "spec.version",
                &json!(first),
                errs.join(","),
            ));
        }
    }
}

fn validate_deprecation(v: &Value, path: &str, c: &mut Vec<Cause>) {
    let Some(warning) = field(v, "deprecationWarning") else {
        return;
    };
    let field = format!("{path}.deprecationWarning");
    let w = warning.as_str().unwrap_or("");
    let mut invalid = |msg: String| c.push(Cause::invalid(field.clone(), &json!(w), msg));
    if !flag(v, "deprecated") {
        return invalid("can only be set for deprecated versions".into());
    }
    if w.len() > 256 {
        invalid("must be <= 256 characters long".into());
    }
    if w.is_empty() {
        invalid("must not be an empty string".into());
    }
    // Go's unicode.IsPrint admits the ASCII space but no other whitespace.
    if let Some((i, _)) = w
        .char_indices()
        .find(|(_, ch)| ch.is_control() || (ch.is_whitespace() && *ch != ' '))
    {
        invalid(format!(
            "must only contain printable UTF-8 characters; non-printable character found at index {i}"
        ));
    }
}

fn validate_stored_versions(status: &Value, versions: &[Value], c: &mut Vec<Cause>) {
    const FIELD: &str = "status.storedVersions";
    let stored = list(status, "storedVersions");
    let stored_value = status.get("storedVersions").cloned().unwrap_or(Value::Null);
    if stored.is_empty() {
        c.push(Cause::invalid(
            FIELD,
            &stored_value,
            "must have at least one stored version",
        ));
        return;
    }
    let stored_names: Vec<&str> = stored.iter().map(|v| v.as_str().unwrap_or("")).collect();
    for v in versions.iter().filter(|v| flag(v, "storage")) {
        let name = text(v, "name");
        if !stored_names.contains(&name) {
            let msg = format!("must have the storage version {name}");
            c.push(Cause::invalid(FIELD, &stored_value, msg));
        }
    }
    let served: HashSet<&str> = versions.iter().map(|v| text(v, "name")).collect();
    let mut reported = HashSet::new();
    for (i, name) in stored_names.iter().enumerate().rev() {
        if served.contains(name) || !reported.insert(*name) {
            continue;
        }
        // Reported at the name's last index, as upstream's map of names does.
        let msg = format!("missing from spec.versions; {name} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {name} and removes {name} from status.storedVersions");
        c.push(Cause::invalid(format!("{FIELD}[{i}]"), &json!(name), msg));
    }
    let from = c.len() - reported.len();
    c[from..].reverse();
}

const APPROVAL: &str = "api-approved.kubernetes.io";

#[derive(PartialEq)]
enum Approval {
    Missing,
    Bypassed,
    Approved,
    Invalid,
}

fn approval(crd: &Value) -> (Approval, String) {
    let value = crd
        .pointer("/metadata/annotations")
        .map_or("", |a| text(a, APPROVAL));
    // A URL needs a scheme and a host, as url.ParseRequestURI reads it.
    let is_url = value.split_once("://").is_some_and(|(scheme, rest)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && rest
                .split(['/', '?'])
                .next()
                .is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace))
    });
    if value.is_empty() {
        (Approval::Missing, format!("protected groups must have approval annotation {APPROVAL:?}, see https://github.com/kubernetes/enhancements/pull/1111"))
    } else if value.starts_with("unapproved") {
        (Approval::Bypassed, format!("not approved: {value:?}"))
    } else if is_url {
        (Approval::Approved, format!("approved in {value}"))
    } else {
        (Approval::Invalid, format!("protected groups must have approval annotation {APPROVAL:?} with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"))
    }
}

/// Groups under k8s.io and kubernetes.io need an API review annotation.
fn validate_approval(crd: &Value, old: Option<&Value>, c: &mut Vec<Cause>) {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let protected = ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|g| group == *g || group.ends_with(&format!(".{g}")));
    if !protected {
        return;
    }
    let (state, reason) = approval(crd);
    // An unchanged state never fails, so controllers can keep writing spec.
    if old.is_some_and(|o| approval(o).0 == state) {
        return;
    }
    let field = format!("metadata.annotations[{APPROVAL}]");
    let value = crd
        .pointer("/metadata/annotations")
        .map_or("", |a| text(a, APPROVAL));
    match state {
        Approval::Missing => c.push(required(field, &reason)),
        Approval::Invalid => c.push(Cause::invalid(field, &json!(value), reason)),
        Approval::Approved | Approval::Bypassed => {}
    }
}

// ---- conversion ----

const ACCEPTED_REVIEW: [&str; 2] = ["v1", "v1beta1"];

fn validate_conversion(conversion: &Value, recognized_review: bool, c: &mut Vec<Cause>) {
    const CLIENT: &str = "spec.conversion.webhookClientConfig";
    const REVIEW: &str = "spec.conversion.conversionReviewVersions";
    let strategy = text(conversion, "strategy");
    enum_string(
        "spec.conversion.strategy",
        strategy,
        &["None", "Webhook"],
        c,
    );
    let webhook = field(conversion, "webhook").unwrap_or(&Value::Null);
    let client = field(webhook, "clientConfig");
    let review = list(webhook, "conversionReviewVersions");
    if strategy != "Webhook" {
        let why = "should not be set when strategy is not set to Webhook";
        if client.is_some() {
            c.push(Cause::forbidden(CLIENT, why));
        }
        if !review.is_empty() {
            c.push(Cause::forbidden(REVIEW, why));
        }
        return;
    }
    match client.map(|cc| (cc, field(cc, "url"), field(cc, "service"))) {
        None => c.push(required(CLIENT, "required when strategy is set to Webhook")),
        Some((_, Some(url), None)) => {
            validate_webhook_url(&format!("{CLIENT}.url"), url.as_str().unwrap_or(""), c)
        }
        Some((_, None, Some(service))) => {
            validate_webhook_service(&format!("{CLIENT}.service"), service, c)
        }
        Some(_) => c.push(required(
            CLIENT,
            "exactly one of url or service is required",
        )),
    }
    // caBundle is not checked: upstream accepts any bundle until the CRD is established.
    if review.is_empty() {
        c.push(Cause::required(REVIEW));
        return;
    }
    let mut seen = HashSet::new();
    for (i, v) in review.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        let field = format!("{REVIEW}[{i}]");
        if !seen.insert(v) {
            c.push(Cause::invalid(field, &json!(v), "duplicate version"));
            continue;
        }
        for e in dns1035_errors(v) {
            c.push(Cause::invalid(field.clone(), &json!(v), e));
        }
    }
    if recognized_review && !seen.iter().any(|v| ACCEPTED_REVIEW.contains(v)) {
        c.push(Cause::invalid(
            REVIEW,
            &Value::Array(review.to_vec()),
            "must include at least one of v1, v1beta1",
        ));
    }
}

/// Upstream's webhook URL rules: https, a host, no user info, query or fragment.
fn validate_webhook_url(field: &str, url: &str, c: &mut Vec<Cause>) {
    const FORM: &str = "; desired format: https://host[/path]";
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (scheme, rest) = match rest.split_once(':') {
        Some((s, r))
            if s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (s.to_ascii_lowercase(), r)
        }
        _ => (String::new(), rest),
    };
    let authority = rest
        .strip_prefix("//")
        .map_or("", |r| r.split('/').next().unwrap_or(""));
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut invalid = |v: &str, msg: String| c.push(Cause::invalid(field, &json!(v), msg));
    if scheme != "https" {
        invalid(
            &scheme,
            format!("'https' is the only allowed URL scheme{FORM}"),
        );
    }
    if host.is_empty() {
        invalid(host, format!("host must be specified{FORM}"));
    }
    if let Some(user) = user {
        invalid(user, "user information is not permitted in the URL".into());
    }
    if !fragment.is_empty() {
        invalid(fragment, "fragments are not permitted in the URL".into());
    }
    if !query.is_empty() {
        invalid(
            query,
            "query parameters are not permitted in the URL".into(),
        );
    }
}

fn validate_webhook_service(path: &str, service: &Value, c: &mut Vec<Cause>) {
    for key in ["name", "namespace"] {
        if text(service, key).is_empty() {
            c.push(Cause::required(format!("{path}.{key}")));
        }
    }
    let port = service.get("port").and_then(Value::as_i64).unwrap_or(0);
    if !(1..=65535).contains(&port) {
        c.push(Cause::invalid(
            format!("{path}.port"),
            &json!(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    let url_path = text(service, "path");
    if url_path.is_empty() || url_path == "/" {
        return;
    }
    let field = format!("{path}.path");
    let mut invalid = |msg: String| c.push(Cause::invalid(field.clone(), &json!(url_path), msg));
    if url_path == "//" {
        return invalid("segment[0] may not be empty".into());
    }
    if !url_path.starts_with('/') {
        invalid("must start with a '/'".into());
    }
    let inner = url_path.get(1..).unwrap_or("");
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    for (i, step) in inner.split('/').enumerate() {
        if step.is_empty() {
            invalid(format!("segment[{i}] may not be empty"));
            continue;
        }
        for e in subdomain_errors(step) {
            invalid(format!("segment[{i}]: {e}"));
        }
    }
}

// ---- subresources, printer columns, selectable fields ----

fn simple_json_path(path: &str, field: &str) -> Option<Cause> {
    let msg = match path.as_bytes().first() {
        None => "must not be empty",
        Some(b'.') => return None,
        Some(_) => "must be a simple json path starting with .",
    };
    Some(Cause::invalid(field, &json!(path), msg))
}

fn validate_subresources(sub: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
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
        c.push(required(format!("{path}.type"), TYPES));
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

fn validate_selectable(
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
        c.push(too_many(path, unique.len(), MAX_SELECTABLE_FIELDS));
    }
}

/// Splits a field path into `.`, `[`, `]` and the text between them; a
/// single-quoted string is one token.
fn path_tokens(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let end = match b[i] {
            b'\'' => {
                let mut j = i + 1;
                while j < b.len() && !(b[j] == b'\'' && b[j - 1] != b'\\') {
                    j += 1;
                }
                (j + 1).min(b.len())
            }
            b'.' | b'[' | b']' => i + 1,
            _ => (i..b.len())
                .find(|&j| matches!(b[j], b'.' | b'[' | b']'))
                .unwrap_or(b.len()),
        };
        out.push(&s[i..end]);
        i = end;
    }
    out
}

/// Upstream's cel.ValidFieldPath: walks `.a.b` (and `['k']` when allowed)
/// through the structural schema, returning the path's segments (rendered as
/// field.Path parts) and the schema it points at.
fn resolve_field_path<'a>(
    path: &str,
    schema: &'a Value,
    allow_array: bool,
) -> Result<(Vec<String>, Option<&'a Value>), String> {
    const INVALID: &str = "does not refer to a valid field";
    const END: &str = "unexpected end of JSON path";
    let mut segments = Vec::new();
    let mut current = Some(schema);
    let mut step = |name: &str, segments: &mut Vec<String>| -> Result<(), String> {
        let s = current.ok_or(INVALID)?;
        if let Some(props) = props(s).filter(|p| !p.is_empty()) {
            current = Some(props.get(name).ok_or(INVALID)?);
            let dot = if segments.is_empty() { "" } else { "." };
            segments.push(format!("{dot}{name}"));
        } else if let Some(extra) = field(s, "additionalProperties") {
            current = extra.is_object().then_some(extra);
            segments.push(format!("[{name}]"));
        } else {
            return Err(INVALID.into());
        }
        Ok(())
    };
    let mut tokens = path_tokens(path).into_iter();
    while let Some(tok) = tokens.next() {
        match tok {
            "[" => {
                if !allow_array {
                    return Err("array notation is not allowed".into());
                }
                let quoted = tokens.next().ok_or(END)?;
                let inner = quoted
                    .strip_prefix('\'')
                    .and_then(|q| q.strip_suffix('\''))
                    .filter(|_| quoted.len() >= 2)
                    .ok_or_else(|| format!("expected single quoted string but got {quoted}"))?;
                step(
                    &inner.replace("\\'", "'").replace("\\\\", "\\"),
                    &mut segments,
                )?;
                match tokens.next() {
                    None => return Err(END.into()),
                    Some("]") => {}
                    Some(t) => return Err(format!("expected ] but got {t}")),
                }
            }
            "." => step(tokens.next().ok_or(END)?, &mut segments)?,
            other => return Err(format!("expected [ or . but got: {other}")),
        }
    }
    Ok((segments, current))
}

// ---- schemas ----

const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Every subschema of `s`, depth first, until `pred` holds.
fn schema_any(s: &Value, pred: &dyn Fn(&Value) -> bool) -> bool {
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

fn has_extensions(s: &Value) -> bool {
    flag(s, "x-kubernetes-embedded-resource")
        || field(s, "x-kubernetes-preserve-unknown-fields").is_some()
        || flag(s, "x-kubernetes-int-or-string")
        || !list(s, "x-kubernetes-list-map-keys").is_empty()
        || field(s, "x-kubernetes-list-type").is_some()
        || !list(s, "x-kubernetes-validations").is_empty()
}

fn non_empty_map(s: &Value, key: &str) -> bool {
    s.get(key)
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
}

/// Why upstream cannot read `s` as a structural schema at all, if it cannot.
fn unsupported(s: &Value) -> Option<String> {
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

fn non_structural(s: &Value) -> bool {
    let mut c = Vec::new();
    unsupported(s).is_some() || {
        structural(s, Level::Root, "", &mut c);
        !c.is_empty()
    }
}

/// Validates `spec.validation` or a version's `schema`.
fn validate_validation(
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

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

/// Upstream's structural-schema invariants on the schema proper (properties,
/// items, additionalProperties); allOf/anyOf/oneOf/not go to `junctors`.
fn structural(s: &Value, lvl: Level, path: &str, c: &mut Vec<Cause>) {
    let ty = text(s, "type");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let items = field(s, "items").filter(|i| i.is_object());
    if ty == "array" && field(s, "items").is_none() {
        c.push(required(format!("{path}.items"), "must be specified"));
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
            required(type_field.clone(), msg)
        } else {
            Cause::invalid(type_field.clone(), &json!(ty), msg)
        });
    } else if ty.is_empty() && !int_or_string && !preserve {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        c.push(required(type_field.clone(), msg));
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
        c.push(required(
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
                required(at("type"), &msg)
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
            None => c.push(required(at("x-kubernetes-list-type"), map_msg)),
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
            c.push(required(
                at("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        let items = match field(s, "items") {
            None => {
                return c.push(required(
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
fn atomic_set_items(s: &Value, path: &str, c: &mut Vec<Cause>) {
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
fn map_set_items(s: &Value, path: &str, c: &mut Vec<Cause>) {
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
            c.push(required(format!("{at}.default"), "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"));
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
            c.push(required(at("rule"), "rule is not specified"));
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
            c.push(required(
                at("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        let msg_expr = text(rule, "messageExpression");
        if !msg_expr.is_empty() && msg_expr.trim().is_empty() {
            c.push(required(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn crontab() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {
                                "cronSpec": {"type": "string"},
                                "image": {"type": "string"},
                                "replicas": {"type": "integer"}
                            }},
                            "status": {"type": "object", "properties": {
                                "replicas": {"type": "integer"},
                                "labelSelector": {"type": "string"}
                            }}
                        }
                    }},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.labelSelector"
                        }
                    },
                    "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                    ],
                    "selectableFields": [{"jsonPath": ".spec.cronSpec"}]
                }]
            }
        })
    }

    /// What the server validates: defaulted, with status as the strategy sets it.
    fn prepared(mut crd: Value, old: Option<&Value>) -> Value {
        apply_defaults(&mut crd);
        prepare_status(&mut crd, old);
        crd
    }

    fn rendered(causes: Vec<Cause>) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn on_create(change: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut crd = crontab();
        change(&mut crd);
        rendered(validate(&prepared(crd, None), None))
    }

    fn on_update(old: &Value, change: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut crd = old.clone();
        change(&mut crd);
        let crd = prepared(crd, Some(old));
        rendered(validate(&crd, Some(old)))
    }

    fn schema(crd: &mut Value) -> &mut Value {
        &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    }

    #[track_caller]
    fn has(errs: &[String], want: &str) {
        assert!(
            errs.iter().any(|e| e == want),
            "missing {want:?} in {errs:#?}"
        );
    }

    /// For causes whose value is a whole object: match the field and the detail.
    #[track_caller]
    fn has_detail(errs: &[String], field: &str, detail: &str) {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{field}: ")) && e.ends_with(detail)),
            "missing {field}: …{detail:?} in {errs:#?}"
        );
    }

    const DNS1035: &str = names::DNS1035_LABEL_MSG;
    const ROOT: &str = "spec.validation.openAPIV3Schema";

    #[test]
    fn a_valid_crontab_passes() {
        let crd = prepared(crontab(), None);
        assert_eq!(rendered(validate(&crd, None)), Vec::<String>::new());
        assert_eq!(rendered(validate(&crd, Some(&crd))), Vec::<String>::new());
        assert!(validate_status(&crd, Some(&crd)).is_empty());
    }

    #[test]
    fn defaults_follow_upstream_v1() {
        let mut crd = crontab();
        crd["spec"]["names"] = json!({"plural": "crontabs", "kind": "CronTab"});
        crd["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {
            "clientConfig": {"service": {"namespace": "ns", "name": "conv"}},
            "conversionReviewVersions": ["v1"]
        }});
        apply_defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "crontab");
        assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(
            crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["port"],
            443
        );
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert!(validate(&crd, None).is_empty());

        let mut crd = crontab();
        crd["spec"]["names"]["singular"] = json!("tab");
        apply_defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "tab");
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
    }

    #[test]
    fn the_status_is_the_strategys() {
        let mut crd = crontab();
        crd["status"] =
            json!({"storedVersions": ["v0"], "acceptedNames": {"plural": "x", "kind": "X"}});
        prepare_status(&mut crd, None);
        assert_eq!(
            crd["status"],
            json!({"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": ["v1"]})
        );
        let old = json!({"status": {"storedVersions": ["v1beta1"]}});
        prepare_status(&mut crd, Some(&old));
        assert_eq!(crd["status"]["storedVersions"], json!(["v1beta1", "v1"]));
    }

    #[test]
    fn the_name_is_plural_dot_group() {
        let errs = on_create(|c| c["metadata"]["name"] = json!("crontab.stable.example.com"));
        assert_eq!(
            errs,
            [
                r#"metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group"#
            ]
        );
    }

    #[test]
    fn the_group_is_a_dotted_subdomain() {
        let errs = on_create(|c| c["spec"]["group"] = json!(""));
        has(&errs, "spec.group: Required value");
        let errs = on_create(|c| c["spec"]["group"] = json!("example"));
        has(
            &errs,
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
        );
        let errs = on_create(|c| c["spec"]["group"] = json!("Stable.example.com"));
        has(
            &errs,
            &format!(
                r#"spec.group: Invalid value: "Stable.example.com": {}"#,
                names::DNS1123_SUBDOMAIN_MSG
            ),
        );
    }

    #[test]
    fn the_scope_is_cluster_or_namespaced() {
        let errs = on_create(|c| c["spec"]["scope"] = json!(null));
        assert_eq!(errs, ["spec.scope: Required value"]);
        let errs = on_create(|c| c["spec"]["scope"] = json!("Global"));
        assert_eq!(
            errs,
            [
                r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#
            ]
        );
    }

    #[test]
    fn names_are_required_labels() {
        let errs = on_create(|c| c["spec"]["names"]["plural"] = json!(null));
        has(&errs, "spec.names.plural: Required value");
        let errs = on_create(|c| c["spec"]["names"]["kind"] = json!(null));
        has(&errs, "spec.names.kind: Required value");
        has(&errs, "spec.names.listKind: Required value");
        let errs = on_create(|c| c["spec"]["names"]["plural"] = json!("CronTabs"));
        has(
            &errs,
            &format!(r#"spec.names.plural: Invalid value: "CronTabs": {DNS1035}"#),
        );
        let long = "a".repeat(64);
        let errs = on_create(|c| c["spec"]["names"]["singular"] = json!(long));
        has(
            &errs,
            &format!(
                r#"spec.names.singular: Invalid value: "{long}": must be no more than 63 characters"#
            ),
        );
        let errs = on_create(|c| c["spec"]["names"]["kind"] = json!("Cron_Tab"));
        has(
            &errs,
            &format!(
                r#"spec.names.kind: Invalid value: "Cron_Tab": may have mixed case, but should otherwise match: {DNS1035}"#
            ),
        );
        let errs = on_create(|c| c["spec"]["names"]["listKind"] = json!("CronTab"));
        assert_eq!(
            errs,
            [
                r#"spec.names.listKind: Invalid value: "CronTab": kind and listKind may not be the same"#
            ]
        );
        let errs = on_create(|c| c["spec"]["names"]["shortNames"] = json!(["ct", "c t"]));
        assert_eq!(
            errs,
            [format!(
                r#"spec.names.shortNames[1]: Invalid value: "c t": {DNS1035}"#
            )]
        );
        let errs = on_create(|c| c["spec"]["names"]["categories"] = json!(["All"]));
        assert_eq!(
            errs,
            [format!(
                r#"spec.names.categories[0]: Invalid value: "All": {DNS1035}"#
            )]
        );
    }

    #[test]
    fn there_is_exactly_one_storage_version() {
        let errs = on_create(|c| c["spec"]["versions"] = json!([]));
        assert_eq!(
            errs,
            [
                "spec.versions: Invalid value: []: must have exactly one version marked as storage version",
                "status.storedVersions: Invalid value: null: must have at least one stored version",
            ]
        );
        let errs = on_create(|c| {
            let mut second = c["spec"]["versions"][0].clone();
            second["name"] = json!("v2");
            c["spec"]["versions"].as_array_mut().unwrap().push(second);
        });
        has_detail(
            &errs,
            "spec.versions",
            ": must have exactly one version marked as storage version",
        );
        let errs = on_create(|c| {
            let mut second = c["spec"]["versions"][0].clone();
            second["storage"] = json!(false);
            c["spec"]["versions"].as_array_mut().unwrap().push(second);
        });
        has_detail(
            &errs,
            "spec.versions",
            ": must contain unique version names",
        );
    }

    #[test]
    fn version_names_are_dns1035_labels() {
        let errs = on_create(|c| c["spec"]["versions"][0]["name"] = json!("1beta"));
        has(
            &errs,
            &format!(r#"spec.versions[0].name: Invalid value: "1beta": {DNS1035}"#),
        );
        // Upstream's internal form also carries the first name as spec.version.
        has(
            &errs,
            &format!(r#"spec.version: Invalid value: "1beta": {DNS1035}"#),
        );
    }

    #[test]
    fn every_version_needs_a_schema() {
        let errs = on_create(|c| {
            c["spec"]["versions"][0]["schema"] = json!(null);
            c["spec"]["versions"][0]["selectableFields"] = json!(null);
        });
        assert_eq!(
            errs,
            ["spec.versions[0].schema.openAPIV3Schema: Required value"]
        );
    }

    #[test]
    fn the_root_is_an_object() {
        let errs = on_create(|c| schema(c)["type"] = json!("string"));
        has(
            &errs,
            &format!(r#"{ROOT}.type: Invalid value: "string": must be object at the root"#),
        );
        has(
            &errs,
            &format!(
                r#"{ROOT}.type: Invalid value: "string": only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#
            ),
        );
        let errs = on_create(|c| schema(c)["type"] = json!(null));
        has(
            &errs,
            &format!("{ROOT}.type: Required value: must not be empty at the root"),
        );
        let errs = on_create(|c| schema(c)["nullable"] = json!(true));
        has(
            &errs,
            &format!("{ROOT}.nullable: Forbidden: nullable cannot be true at the root"),
        );
        let errs = on_create(|c| schema(c)["type"] = json!("thing"));
        has(
            &errs,
            &format!(
                r#"{ROOT}.type: Unsupported value: "thing": supported values: "array", "boolean", "integer", "number", "object", "string""#
            ),
        );
    }

    #[test]
    fn every_specified_field_has_a_type() {
        let errs = on_create(|c| {
            schema(c)["properties"]["spec"]["properties"]["foo"] = json!({});
            schema(c)["properties"]["spec"]["properties"]["list"] =
                json!({"type": "array", "items": {}});
            schema(c)["properties"]["spec"]["properties"]["arr"] = json!({"type": "array"});
        });
        let spec = format!("{ROOT}.properties[spec].properties");
        assert_eq!(
            errs,
            [
                format!("{spec}[arr].items: Required value: must be specified"),
                format!("{spec}[foo].type: Required value: must not be empty for specified object fields"),
                format!("{spec}[list].items.type: Required value: must not be empty for specified array items"),
            ]
        );
        let errs = on_create(|c| {
            let p = &mut schema(c)["properties"]["spec"]["properties"];
            p["port"] = json!({"x-kubernetes-int-or-string": true});
            p["raw"] = json!({"x-kubernetes-preserve-unknown-fields": true});
            p["either"] = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
        });
        assert_eq!(errs, Vec::<String>::new());
    }

    #[test]
    fn junctors_only_restrict_values() {
        let errs = on_create(|c| {
            schema(c)["properties"]["spec"]["properties"]["x"] = json!({"type": "string", "anyOf": [{"type": "string"}, {"description": "d", "pattern": "a"}]});
        });
        let x = format!("{ROOT}.properties[spec].properties[x]");
        assert_eq!(
            errs,
            [
                format!("{x}.anyOf[0].type: Forbidden: must be empty to be structural"),
                format!("{x}.anyOf[1].description: Forbidden: must be empty to be structural"),
            ]
        );
        let errs = on_create(|c| {
            schema(c)["properties"]["spec"]["allOf"] = json!([{"properties": {"metadata": {}}}]);
        });
        has(&errs, &format!("{ROOT}.properties[spec].allOf[0].properties[metadata]: Forbidden: must not be specified in a nested context"));
    }

    #[test]
    fn metadata_at_the_root_restricts_names_only() {
        let errs = on_create(|c| {
            schema(c)["properties"]["metadata"] = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}});
        });
        assert_eq!(errs, Vec::<String>::new());
        let errs = on_create(|c| {
            schema(c)["properties"]["metadata"] =
                json!({"type": "object", "properties": {"labels": {"type": "object"}}});
        });
        assert_eq!(errs, [format!("{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified")]);
        let errs = on_create(|c| schema(c)["properties"]["metadata"] = json!({"type": "string"}));
        has(
            &errs,
            &format!(
                r#"{ROOT}.properties[metadata].type: Invalid value: "string": must be object"#
            ),
        );
        let errs = on_create(|c| {
            schema(c)["properties"]["metadata"] = json!({"type": "object", "properties": {"name": {"type": "string", "default": "x"}}});
        });
        has(&errs, &format!("{ROOT}.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata"));
        let errs = on_create(|c| schema(c)["properties"]["kind"] = json!({"type": "integer"}));
        has(
            &errs,
            &format!(r#"{ROOT}.properties[kind].type: Invalid value: "integer": must be string"#),
        );
    }

    #[test]
    fn additional_properties_are_not_for_the_root_nor_beside_properties() {
        let errs = on_create(|c| schema(c)["additionalProperties"] = json!({"type": "string"}));
        has(
            &errs,
            &format!("{ROOT}.additionalProperties: Forbidden: must not be used at the root"),
        );
        has(&errs, &format!("{ROOT}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"));
        let errs = on_create(|c| {
            schema(c)["properties"]["spec"]["properties"]["env"] =
                json!({"type": "object", "additionalProperties": {"type": "string"}});
        });
        assert_eq!(errs, Vec::<String>::new());
    }

    #[test]
    fn status_subresource_limits_the_root() {
        let errs = on_create(|c| schema(c)["anyOf"] = json!([{"required": ["spec"]}]));
        has_detail(&errs, ROOT, ": only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled");
        let errs = on_create(|c| {
            schema(c)["anyOf"] = json!([{"required": ["spec"]}]);
            c["spec"]["versions"][0]["subresources"]["status"] = json!(null);
        });
        assert_eq!(errs, Vec::<String>::new());
    }

    #[test]
    fn differing_versions_report_per_version_paths() {
        let errs = on_create(|c| {
            let mut beta = c["spec"]["versions"][0].clone();
            beta["name"] = json!("v1beta1");
            beta["storage"] = json!(false);
            beta["selectableFields"] = json!(null);
            beta["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["foo"] =
                json!({});
            c["spec"]["versions"].as_array_mut().unwrap().push(beta);
        });
        assert_eq!(errs, ["spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[foo].type: Required value: must not be empty for specified object fields"]);
    }

    #[test]
    fn per_version_selectable_fields_need_a_per_version_schema() {
        // Upstream's conversion hoists identical schemas, leaving the
        // versions' differing selectable fields without one.
        let errs = on_create(|c| {
            let mut beta = c["spec"]["versions"][0].clone();
            beta["name"] = json!("v1beta1");
            beta["storage"] = json!(false);
            beta["selectableFields"] = json!(null);
            c["spec"]["versions"].as_array_mut().unwrap().push(beta);
        });
        assert_eq!(errs, ["spec.versions[0].selectableFields: Invalid value: \"\": may only be set when `version.schema.openAPIV3Schema` is not included"]);
    }

    #[test]
    fn printer_columns() {
        let col =
            |c: &mut Value, v: Value| c["spec"]["versions"][0]["additionalPrinterColumns"][0] = v;
        let p = "spec.additionalPrinterColumns[0]";
        let errs = on_create(|c| col(c, json!({"type": "string", "jsonPath": ".spec.x"})));
        assert_eq!(errs, [format!("{p}.name: Required value")]);
        let errs = on_create(|c| col(c, json!({"name": "X", "jsonPath": ".spec.x"})));
        assert_eq!(
            errs,
            [format!(
                "{p}.type: Required value: must be one of boolean,date,integer,number,string"
            )]
        );
        let errs = on_create(|c| {
            col(
                c,
                json!({"name": "X", "type": "str", "format": "uuid", "jsonPath": ".spec.x"}),
            )
        });
        assert_eq!(
            errs,
            [
                format!(
                    r#"{p}.type: Invalid value: "str": must be one of boolean,date,integer,number,string"#
                ),
                format!(
                    r#"{p}.format: Invalid value: "uuid": must be one of byte,date,date-time,double,float,int32,int64,password"#
                ),
            ]
        );
        let errs = on_create(|c| col(c, json!({"name": "X", "type": "string"})));
        assert_eq!(errs, [format!("{p}.JSONPath: Required value")]);
        let errs = on_create(|c| {
            col(
                c,
                json!({"name": "X", "type": "string", "jsonPath": "spec.x"}),
            )
        });
        assert_eq!(
            errs,
            [format!(
                r#"{p}.JSONPath: Invalid value: "spec.x": must be a simple json path starting with ."#
            )]
        );
    }

    #[test]
    fn scale_paths() {
        let scale = |c: &mut Value, key: &str, v: Value| {
            c["spec"]["versions"][0]["subresources"]["scale"][key] = v;
        };
        let p = "spec.subresources.scale";
        let errs = on_create(|c| scale(c, "specReplicasPath", json!(null)));
        assert_eq!(errs, [format!("{p}.specReplicasPath: Required value")]);
        let errs = on_create(|c| scale(c, "specReplicasPath", json!(".status.replicas")));
        assert_eq!(
            errs,
            [format!(
                r#"{p}.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#
            )]
        );
        let errs = on_create(|c| scale(c, "statusReplicasPath", json!("status.replicas")));
        assert_eq!(
            errs,
            [format!(
                r#"{p}.statusReplicasPath: Invalid value: "status.replicas": must be a simple json path starting with ."#
            )]
        );
        let errs = on_create(|c| scale(c, "statusReplicasPath", json!(".spec.replicas")));
        assert_eq!(
            errs,
            [format!(
                r#"{p}.statusReplicasPath: Invalid value: ".spec.replicas": should be a json path under .status"#
            )]
        );
        let errs = on_create(|c| scale(c, "labelSelectorPath", json!(".metadata.labels")));
        assert_eq!(
            errs,
            [format!(
                r#"{p}.labelSelectorPath: Invalid value: ".metadata.labels": should be a json path under either .spec or .status"#
            )]
        );
    }

    #[test]
    fn conversion() {
        let errs = on_create(|c| c["spec"]["conversion"] = json!({"strategy": "Magic"}));
        assert_eq!(
            errs,
            [
                r#"spec.conversion.strategy: Unsupported value: "Magic": supported values: "None", "Webhook""#
            ]
        );
        let errs = on_create(|c| c["spec"]["conversion"] = json!({"strategy": "Webhook"}));
        assert_eq!(
            errs,
            [
                "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
                "spec.conversion.conversionReviewVersions: Required value",
            ]
        );
        let webhook = |client: Value, review: Value| json!({"strategy": "Webhook", "webhook": {"clientConfig": client, "conversionReviewVersions": review}});
        let service = json!({"service": {"namespace": "ns", "name": "conv", "path": "/convert"}});
        let errs = on_create(|c| c["spec"]["conversion"] = webhook(service.clone(), json!(["v1"])));
        assert_eq!(errs, Vec::<String>::new());
        let errs =
            on_create(|c| c["spec"]["conversion"] = webhook(service.clone(), json!(["v2", "v2"])));
        assert_eq!(
            errs,
            [
                r#"spec.conversion.conversionReviewVersions[1]: Invalid value: "v2": duplicate version"#,
                r#"spec.conversion.conversionReviewVersions: Invalid value: ["v2","v2"]: must include at least one of v1, v1beta1"#,
            ]
        );
        let errs = on_create(|c| {
            c["spec"]["conversion"] = webhook(
                json!({"url": "http://conv.example.com/x?a=b"}),
                json!(["v1"]),
            )
        });
        assert_eq!(
            errs,
            [
                r#"spec.conversion.webhookClientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme; desired format: https://host[/path]"#,
                r#"spec.conversion.webhookClientConfig.url: Invalid value: "a=b": query parameters are not permitted in the URL"#,
            ]
        );
        let both = json!({"url": "https://conv.example.com", "service": {"namespace": "ns", "name": "conv"}});
        let errs = on_create(|c| c["spec"]["conversion"] = webhook(both, json!(["v1"])));
        assert_eq!(errs, ["spec.conversion.webhookClientConfig: Required value: exactly one of url or service is required"]);
        let errs = on_create(|c| {
            c["spec"]["conversion"] = webhook(
                json!({"service": {"name": "conv", "port": 0}}),
                json!(["v1"]),
            )
        });
        assert_eq!(
            errs,
            [
                "spec.conversion.webhookClientConfig.service.namespace: Required value",
                "spec.conversion.webhookClientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive",
            ]
        );
        let errs = on_create(|c| {
            c["spec"]["conversion"] = webhook(service.clone(), json!(["v1"]));
            c["spec"]["conversion"]["strategy"] = json!("None");
        });
        assert_eq!(
            errs,
            [
                "spec.conversion.webhookClientConfig: Forbidden: should not be set when strategy is not set to Webhook",
                "spec.conversion.conversionReviewVersions: Forbidden: should not be set when strategy is not set to Webhook",
            ]
        );
    }

    #[test]
    fn group_and_plural_never_change_kind_and_scope_once_established() {
        let old = prepared(crontab(), None);
        let errs = on_update(&old, |c| c["spec"]["group"] = json!("other.example.com"));
        assert_eq!(
            errs,
            [r#"spec.group: Invalid value: "other.example.com": field is immutable"#]
        );
        let errs = on_update(&old, |c| c["spec"]["names"]["plural"] = json!("crontabz"));
        assert_eq!(
            errs,
            [r#"spec.names.plural: Invalid value: "crontabz": field is immutable"#]
        );
        let change = |c: &mut Value| {
            c["spec"]["names"]["kind"] = json!("CronTask");
            c["spec"]["names"]["listKind"] = json!("CronTaskList");
            c["spec"]["scope"] = json!("Cluster");
        };
        assert_eq!(on_update(&old, change), Vec::<String>::new());
        let mut established = old.clone();
        established["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        assert_eq!(
            on_update(&established, change),
            [
                r#"spec.scope: Invalid value: "Cluster": field is immutable"#,
                r#"spec.names.kind: Invalid value: "CronTask": field is immutable"#,
            ]
        );
    }

    #[test]
    fn stored_versions_stay_in_spec() {
        let mut old = crontab();
        let mut beta = old["spec"]["versions"][0].clone();
        beta["name"] = json!("v1beta1");
        beta["storage"] = json!(false);
        old["spec"]["versions"]
            .as_array_mut()
            .unwrap()
            .insert(0, beta);
        let mut old = prepared(old, None);
        old["status"]["storedVersions"] = json!(["v1beta1", "v1"]);
        let errs = on_update(&old, |c| {
            c["spec"]["versions"].as_array_mut().unwrap().remove(0);
        });
        assert_eq!(
            errs,
            [
                r#"status.storedVersions[0]: Invalid value: "v1beta1": missing from spec.versions; v1beta1 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v1beta1 and removes v1beta1 from status.storedVersions"#
            ]
        );

        let mut crd = prepared(crontab(), None);
        crd["status"]["storedVersions"] = json!(["v1", "v0"]);
        crd["spec"]["versions"][0]["name"] = json!("v2");
        crd["metadata"]["name"] = json!("crontabs.stable.example.com");
        assert_eq!(
            rendered(validate(&crd, None)),
            [
                r#"status.storedVersions: Invalid value: ["v1","v0"]: must have the storage version v2"#,
                r#"status.storedVersions[0]: Invalid value: "v1": missing from spec.versions; v1 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v1 and removes v1 from status.storedVersions"#,
                r#"status.storedVersions[1]: Invalid value: "v0": missing from spec.versions; v0 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v0 and removes v0 from status.storedVersions"#,
            ]
        );
    }

    #[test]
    fn status_writes_check_accepted_names() {
        let mut crd = prepared(crontab(), None);
        crd["status"]["acceptedNames"] =
            json!({"plural": "crontabs", "kind": "CronTab", "listKind": "CronTab"});
        assert_eq!(
            rendered(validate_status(&crd, None)),
            [
                r#"status.acceptedNames.listKind: Invalid value: "CronTab": kind and listKind may not be the same"#
            ]
        );
        crd["status"]["acceptedNames"] = json!({"plural": "Crontabs", "kind": "CronTab"});
        assert_eq!(
            rendered(validate_status(&crd, None)),
            [format!(
                r#"status.acceptedNames.plural: Invalid value: "Crontabs": {DNS1035}"#
            )]
        );
    }

    #[test]
    fn selectable_fields() {
        let fields = |c: &mut Value, v: Value| c["spec"]["versions"][0]["selectableFields"] = v;
        let f = "spec.selectableFields[0].jsonPath";
        let errs = on_create(|c| fields(c, json!([{"jsonPath": ".spec.nope"}])));
        assert_eq!(
            errs,
            [format!(
                r#"{f}: Invalid value: ".spec.nope": is an invalid path: does not refer to a valid field"#
            )]
        );
        let errs = on_create(|c| fields(c, json!([{"jsonPath": "spec.image"}])));
        assert_eq!(
            errs,
            [format!(
                r#"{f}: Invalid value: "spec.image": is an invalid path: expected [ or . but got: spec"#
            )]
        );
        let errs = on_create(|c| fields(c, json!([{"jsonPath": ".spec['image']"}])));
        assert_eq!(
            errs,
            [format!(
                r#"{f}: Invalid value: ".spec['image']": is an invalid path: array notation is not allowed"#
            )]
        );
        let errs = on_create(|c| fields(c, json!([{"jsonPath": ".spec"}])));
        assert_eq!(
            errs,
            [format!(
                r#"{f}: Invalid value: ".spec": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."#
            )]
        );
        let errs = on_create(|c| {
            fields(
                c,
                json!([{}, {"jsonPath": ".spec.image"}, {"jsonPath": ".spec.image"}]),
            )
        });
        assert_eq!(
            errs,
            [
                format!("{f}: Required value"),
                r#"spec.selectableFields[2].jsonPath: Duplicate value: ".spec.image""#.to_string(),
            ]
        );
        let nine = |c: &mut Value| {
            let props: Map<String, Value> = (0..9)
                .map(|i| (format!("f{i}"), json!({"type": "string"})))
                .collect();
            schema(c)["properties"]["spec"]["properties"] = Value::Object(props);
            c["spec"]["versions"][0]["additionalPrinterColumns"] = json!(null);
            c["spec"]["versions"][0]["subresources"]["scale"] = json!(null);
            fields(
                c,
                (0..9)
                    .map(|i| json!({"jsonPath": format!(".spec.f{i}")}))
                    .collect(),
            );
        };
        assert_eq!(
            on_create(nine),
            ["spec.selectableFields: Too many: 9: must have at most 8 items"]
        );
        // Already stored unchanged, so the update is allowed.
        let mut old = crontab();
        nine(&mut old);
        let old = prepared(old, None);
        assert_eq!(
            on_update(&old, |c| c["spec"]["names"]["shortNames"] = json!(["cr"])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn list_and_map_semantics() {
        let ports =
            |c: &mut Value, v: Value| schema(c)["properties"]["spec"]["properties"]["ports"] = v;
        let p = format!("{ROOT}.properties[spec].properties[ports]");
        let list = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
        let errs = on_create(|c| ports(c, list.clone()));
        assert_eq!(errs, [format!("{p}.items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property")]);
        let mut keyed = list.clone();
        keyed["items"]["required"] = json!(["name"]);
        assert_eq!(on_create(|c| ports(c, keyed)), Vec::<String>::new());
        let errs = on_create(|c| {
            ports(
                c,
                json!({"type": "object", "x-kubernetes-list-type": "set"}),
            )
        });
        assert_eq!(
            errs,
            [format!(
                r#"{p}.type: Invalid value: "object": must be array if x-kubernetes-list-type is specified"#
            )]
        );
        let errs = on_create(|c| {
            ports(
                c,
                json!({"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}),
            )
        });
        assert_eq!(
            errs,
            [format!(
                r#"{p}.x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map""#
            )]
        );
        let errs = on_create(|c| {
            ports(
                c,
                json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}),
            )
        });
        assert_eq!(errs, [format!("{p}.items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set")]);
    }

    #[test]
    fn validation_rules_need_a_rule() {
        let errs = on_create(|c| {
            schema(c)["properties"]["spec"]["x-kubernetes-validations"] =
                json!([{"rule": " "}, {"rule": "self.a", "reason": "Nope"}])
        });
        let v = format!("{ROOT}.properties[spec].x-kubernetes-validations");
        assert_eq!(
            errs,
            [
                format!("{v}[0].rule: Required value: rule is not specified"),
                format!(
                    r#"{v}[1].reason: Unsupported value: "Nope": supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#
                ),
            ]
        );
        let errs = on_create(
            |c| schema(c)["properties"]["spec"]["x-kubernetes-validations"] = json!([{"rule": "true", "fieldPath": ".image"}, {"rule": "true", "fieldPath": ".nope"}]),
        );
        assert_eq!(
            errs,
            [format!(
                r#"{v}[1].fieldPath: Invalid value: ".nope": must be a valid path"#
            )]
        );
    }

    #[test]
    fn preserve_unknown_fields_cannot_be_set() {
        let errs = on_create(|c| c["spec"]["preserveUnknownFields"] = json!(true));
        assert_eq!(errs, ["spec.preserveUnknownFields: Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead"]);
    }

    #[test]
    fn protected_groups_need_api_approval() {
        let k8s = |c: &mut Value, approval: Option<&str>| {
            c["spec"]["group"] = json!("stable.k8s.io");
            c["metadata"]["name"] = json!("crontabs.stable.k8s.io");
            if let Some(a) = approval {
                c["metadata"]["annotations"] = json!({APPROVAL: a});
            }
        };
        assert_eq!(
            on_create(|c| k8s(c, None)),
            [
                r#"metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111"#
            ]
        );
        assert_eq!(
            on_create(|c| k8s(c, Some("https://github.com/kubernetes/kubernetes/pull/1"))),
            Vec::<String>::new()
        );
        assert_eq!(
            on_create(|c| k8s(c, Some("unapproved, testing only"))),
            Vec::<String>::new()
        );
        assert_eq!(
            on_create(|c| k8s(c, Some("yes"))),
            [
                r#"metadata.annotations[api-approved.kubernetes.io]: Invalid value: "yes": protected groups must have approval annotation "api-approved.kubernetes.io" with either a URL or a reason starting with "unapproved", see https://github.com/kubernetes/enhancements/pull/1111"#
            ]
        );
        // An unchanged state is never rejected on update.
        let mut old = crontab();
        k8s(&mut old, None);
        let old = prepared(old, None);
        assert_eq!(
            on_update(&old, |c| c["spec"]["names"]["shortNames"] = json!(["cr"])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn deprecation_warnings() {
        let errs = on_create(|c| c["spec"]["versions"][0]["deprecationWarning"] = json!("old"));
        assert_eq!(
            errs,
            [
                r#"spec.versions[0].deprecationWarning: Invalid value: "old": can only be set for deprecated versions"#
            ]
        );
        let errs = on_create(|c| {
            c["spec"]["versions"][0]["deprecated"] = json!(true);
            c["spec"]["versions"][0]["deprecationWarning"] = json!("a\tb");
        });
        assert_eq!(
            errs,
            [
                r#"spec.versions[0].deprecationWarning: Invalid value: "a\tb": must only contain printable UTF-8 characters; non-printable character found at index 1"#
            ]
        );
    }

    #[test]
    fn relaxed_on_update_when_already_stored() {
        // A stored CRD without schemas stays writable (served versions still need one).
        let mut old = prepared(crontab(), None);
        old["spec"]["versions"][0]["schema"] = json!(null);
        old["spec"]["versions"][0]["selectableFields"] = json!(null);
        let errs = on_update(&old, |c| c["spec"]["versions"][0]["served"] = json!(false));
        assert_eq!(errs, Vec::<String>::new());
        let errs = on_update(&old, |_| {});
        assert_eq!(errs, ["spec.versions[0].schema.openAPIV3Schema: Required value: because otherwise all fields are pruned"]);
    }

    #[test]
    fn never_panics() {
        let odd = [
            json!(null),
            json!("x"),
            json!([1, 2]),
            json!({"spec": "x", "status": 5, "metadata": []}),
            json!({"spec": {"versions": {"a": 1}, "names": [], "group": 5, "conversion": "x"}}),
            json!({"spec": {"versions": [1, "x", null, {"schema": 5}, {"schema": {"openAPIV3Schema": "x"}}]}}),
            json!({"spec": {"versions": [{"name": "v1", "storage": true, "selectableFields": [{"jsonPath": "'"}, {"jsonPath": ".['"}, {"jsonPath": "..."}, {"jsonPath": ".a['b'"}, {"jsonPath": "[']"}],
                "schema": {"openAPIV3Schema": {"properties": [1], "items": 5, "anyOf": "x", "allOf": [5, {"anyOf": 1}],
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [1, null], "additionalProperties": {"a": []},
                    "x-kubernetes-validations": [{"rule": 1, "fieldPath": "['"}], "not": {"not": {"items": []}}}}}],
                "conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"url": "@:/#?", "service": null}, "conversionReviewVersions": [1]}}}}),
            json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"service": {"path": "//x/", "port": "a"}}}}}}),
            json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"service": {"path": "é/ü//"}}}}}}),
        ];
        let mut cases: Vec<Value> = odd.to_vec();
        // Every node of a full CRD replaced by values of every JSON type.
        let base = prepared(crontab(), None);
        let mut pointers = Vec::new();
        fn walk(v: &Value, at: String, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => m
                    .iter()
                    .for_each(|(k, x)| walk(x, format!("{at}/{k}"), out)),
                Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .for_each(|(i, x)| walk(x, format!("{at}/{i}"), out)),
                _ => {}
            }
            out.push(at);
        }
        walk(&base, String::new(), &mut pointers);
        for p in pointers.iter().filter(|p| !p.is_empty()) {
            for replacement in [
                json!(null),
                json!(-1),
                json!("é'["),
                json!([]),
                json!({}),
                json!(true),
                json!([{}]),
            ] {
                let mut crd = base.clone();
                if let Some(slot) = crd.pointer_mut(p) {
                    *slot = replacement;
                }
                cases.push(crd);
            }
        }
        for crd in &cases {
            for old in [None, Some(&base), Some(crd)] {
                let mut c = crd.clone();
                apply_defaults(&mut c);
                prepare_status(&mut c, old);
                validate(&c, old);
                validate(crd, old);
                validate_status(crd, old);
                if let Some(old) = old {
                    validate(old, Some(crd));
                }
            }
        }
    }
}
