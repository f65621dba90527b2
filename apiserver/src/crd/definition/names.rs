//! The names a CRD gives its kind (plural, singular, kind, listKind, short
//! names, categories) and its own metadata.name, with the DNS label and
//! subdomain checks worded as upstream words them.

use super::{list, text};
use crate::error::Cause;
use serde_json::{json, Value};
use skiff_machinery::names;

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

pub(super) fn dns1035_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !dns1035_shape(s) {
        errs.push(names::DNS1035_LABEL_MSG.to_string());
    }
    errs
}

pub(super) fn subdomain_errors(s: &str) -> Vec<String> {
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
