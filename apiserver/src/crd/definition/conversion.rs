//! `spec.conversion`: the strategy, and a webhook's client config (URL or
//! service) and review versions.

use super::{enum_string, field, list, text};
use crate::error::Cause;
use serde_json::{json, Value};
use skiff_machinery::names::{dns1035_label_errors, dns1123_subdomain_errors};
use std::collections::HashSet;

pub(super) const ACCEPTED_REVIEW: [&str; 2] = ["v1", "v1beta1"];

pub(super) fn validate_conversion(conversion: &Value, recognized_review: bool, c: &mut Vec<Cause>) {
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
        None => c.push(Cause::required_detail(
            CLIENT,
            "required when strategy is set to Webhook",
        )),
        Some((_, Some(url), None)) => {
            validate_webhook_url(&format!("{CLIENT}.url"), url.as_str().unwrap_or(""), c)
        }
        Some((_, None, Some(service))) => {
            validate_webhook_service(&format!("{CLIENT}.service"), service, c)
        }
        Some(_) => c.push(Cause::required_detail(
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
        for e in dns1035_label_errors(v) {
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
        for e in dns1123_subdomain_errors(step) {
            invalid(format!("segment[{i}]: {e}"));
        }
    }
}
