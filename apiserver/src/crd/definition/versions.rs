//! The spec as a whole and its versions: group, scope, names, each version's
//! name, schema, subresources, columns and fields (its own or hoisted to the
//! spec), deprecation, and the stored versions of the status.

use super::columns::{validate_columns, validate_selectable, validate_subresources};
use super::conversion::validate_conversion;
use super::names::validate_names;
use super::openapi::validate_validation;
use super::options::Opts;
use super::structural::{has_extensions, schema_any};
use super::{
    enum_string, field, flag, list, openapi_schema, per_version, text, version_schemas, Hoisted,
};
use crate::error::Cause;
use serde_json::{json, Value};
use skiff_machinery::names::{dns1035_label_errors, dns1123_subdomain_errors};
use std::collections::HashSet;

pub(super) fn validate_spec(spec: &Value, opts: &Opts, c: &mut Vec<Cause>) {
    let group = text(spec, "group");
    if group.is_empty() {
        c.push(Cause::required("spec.group"));
    } else if let errs @ [_, ..] = dns1123_subdomain_errors(group).as_slice() {
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
            c.push(Cause::required_detail(
                field,
                "because otherwise all fields are pruned",
            ));
        }
    }
    let schemas = version_schemas(versions);
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
    validate_columns(columns, "spec.additionalPrinterColumns", c);
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
        if let errs @ [_, ..] = dns1035_label_errors(name).as_slice() {
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
        validate_columns(columns, &format!("{path}.additionalPrinterColumns"), c);
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
    if let errs @ [_, ..] = dns1035_label_errors(first).as_slice() {
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

pub(super) fn validate_stored_versions(status: &Value, versions: &[Value], c: &mut Vec<Cause>) {
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
