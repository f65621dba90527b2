//! The names a CRD gives its kind (plural, singular, kind, listKind, short
//! names, categories) and its own metadata.name.

use super::{list, text};
use crate::error::Cause;
use serde_json::{json, Value};
use skiff_machinery::names::dns1035_label_errors;

pub(super) fn validate_name(crd: &Value, spec: &Value, c: &mut Vec<Cause>) {
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

pub(super) fn validate_names(names: &Value, path: &str, c: &mut Vec<Cause>) {
    for key in ["plural", "singular"] {
        let v = text(names, key);
        let errs = dns1035_label_errors(v);
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
        let errs = dns1035_label_errors(&v.to_lowercase());
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
            let errs = dns1035_label_errors(v);
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
