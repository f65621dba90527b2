//! The API review annotation (`api-approved.kubernetes.io`) that groups under
//! k8s.io and kubernetes.io need.

use super::text;
use crate::error::Cause;
use serde_json::{json, Value};

pub(super) const APPROVAL: &str = "api-approved.kubernetes.io";

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
pub(super) fn validate_approval(crd: &Value, old: Option<&Value>, c: &mut Vec<Cause>) {
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
        Approval::Missing => c.push(Cause::required_detail(field, &reason)),
        Approval::Invalid => c.push(Cause::invalid(field, &json!(value), reason)),
        Approval::Approved | Approval::Bypassed => {}
    }
}
