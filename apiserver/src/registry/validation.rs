//! Validation per kind, worded as upstream's so `kubectl` users see familiar
//! messages; each problem is a `Cause` naming its field path.

use crate::error::Cause;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;
use skiff_machinery::labels::{self, Selector};
use skiff_machinery::names;
use skiff_machinery::quantity::Quantity;

pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    validate_metadata(res, obj, &mut c);
    if res.custom.is_some() {
        c.extend(crate::crd::validate_object(res, obj));
        return c;
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match (res.group, res.plural) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            c.extend(crate::crd::definition::validate(obj, old))
        }
        ("", "pods") => {
            validate_pod_spec(spec, "spec", &mut c);
            let old_spec = old.map(|o| o.get("spec").unwrap_or(&Value::Null));
            validate_ephemeral_containers(spec, old_spec, &mut c);
        }
        ("", "services") => validate_service(spec, &mut c),
        ("", "configmaps") => validate_config_keys(obj, &mut c),
        ("", "secrets") => validate_secret(obj, &mut c),
        ("apps", "deployments")
        | ("apps", "replicasets")
        | ("apps", "statefulsets")
        | ("apps", "daemonsets") => validate_workload(res, spec, &mut c),
        ("batch", "jobs") => {
            for f in [
                "parallelism",
                "completions",
                "backoffLimit",
                "activeDeadlineSeconds",
            ] {
                non_negative(spec, f, &format!("spec.{f}"), &mut c);
            }
            validate_template(spec, "spec.template", &mut c);
            super::jobsuccess::validate(spec, old, &mut c);
            if let Some(old) = old {
                if old.pointer("/spec/template") != spec.get("template")
                    && old.pointer("/spec/template").is_some()
                    && !old
                        .pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                {
                    c.push(Cause::invalid(
                        "spec.template",
                        spec.get("template").unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        ("batch", "cronjobs") => validate_cronjob(obj, spec, old, &mut c),
        _ => {}
    }
    c
}

/// Upstream's CronJob validation: the name leaves room for the job suffix,
/// the schedule parses, time zones come from `timeZone` only (a `TZ=` prefix
/// is kept on update when the old schedule already had one), and the zone
/// exists in the tz database.
fn validate_cronjob(obj: &Value, spec: &Value, old: Option<&Value>, c: &mut Vec<Cause>) {
    let name = crate::meta::name(obj);
    if name.len() > 52 {
        c.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be no more than 52 characters",
        ));
    }
    let time_zone = spec.get("timeZone").and_then(Value::as_str);
    match spec.get("schedule").and_then(Value::as_str) {
        None | Some("") => c.push(Cause::required("spec.schedule")),
        Some(s) => {
            if let Err(e) = skiff_machinery::cron::Schedule::parse(s) {
                c.push(Cause::invalid("spec.schedule", &json!(s), e));
            }
            let old_had_tz = old
                .and_then(|o| o.pointer("/spec/schedule"))
                .and_then(Value::as_str)
                .is_some_and(|o| o.contains("TZ"));
            if s.contains("TZ") && !old_had_tz {
                c.push(Cause::invalid(
                    "spec.schedule",
                    &json!(s),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if s.contains("TZ") && time_zone.is_some() {
                c.push(Cause::invalid(
                    "spec.schedule",
                    &json!(s),
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    if let Some(tz) = time_zone {
        let bad_part = tz.split('/').any(|p| {
            // Upstream's validTimeZoneCharacters: `^[A-Za-z\.\-_0-9+]{1,14}$`.
            p == "."
                || p == ".."
                || p.starts_with('-')
                || !(1..=14).contains(&p.len())
                || !p
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-+".contains(ch))
        });
        let detail = if tz.is_empty() {
            Some("timeZone must be nil or non-empty string".to_string())
        } else if bad_part {
            Some(format!("unknown time zone {tz}"))
        } else if tz.eq_ignore_ascii_case("Local") {
            Some("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones".into())
        } else {
            skiff_machinery::cron::load_zone(tz).err()
        };
        if let Some(d) = detail {
            c.push(Cause::invalid("spec.timeZone", &json!(tz), d));
        }
    }
    if let Some(p) = spec.get("concurrencyPolicy").and_then(Value::as_str) {
        if !matches!(p, "Allow" | "Forbid" | "Replace") {
            c.push(Cause::not_supported(
                "spec.concurrencyPolicy",
                &json!(p),
                &["Allow", "Forbid", "Replace"],
            ));
        }
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        non_negative(spec, f, &format!("spec.{f}"), c);
    }
    if let Some(tmpl) = spec.pointer("/jobTemplate/spec") {
        validate_template(tmpl, "spec.jobTemplate.spec.template", c);
    }
}

fn validate_metadata(res: &Resource, obj: &Value, c: &mut Vec<Cause>) {
    let name = crate::meta::name(obj);
    let ok = match (res.group, res.plural) {
        ("", "namespaces") => names::is_dns1123_label(name),
        ("", "services") => names::is_dns1035_label(name),
        _ => {
            names::is_dns1123_subdomain(name)
                || allows_path_segment_names(res) && is_path_segment(name)
        }
    };
    if !ok {
        let msg = match (res.group, res.plural) {
            ("", "namespaces") => names::DNS1123_LABEL_MSG,
            ("", "services") => names::DNS1035_LABEL_MSG,
            _ => names::DNS1123_SUBDOMAIN_MSG,
        };
        c.push(Cause::invalid("metadata.name", &json!(name), msg));
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        validate_labels(labels, "metadata.labels", c);
    }
    if let Some(ann) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in ann {
            if let Err(e) = labels::validate_key(k) {
                c.push(Cause::invalid("metadata.annotations", &json!(k), e));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            c.push(Cause {
                kind: crate::error::CauseKind::TooLong,
                field: "metadata.annotations".into(),
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
}

/// RBAC and a few other kinds accept any name that is a valid path segment.
fn allows_path_segment_names(res: &Resource) -> bool {
    res.custom.is_none()
        && (matches!(res.group, "rbac.authorization.k8s.io") || res.plural == "events")
}

fn is_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

pub fn validate_labels(labels: &Value, field: &str, c: &mut Vec<Cause>) {
    let Some(map) = labels.as_object() else {
        c.push(Cause::invalid(
            field,
            labels,
            "must be a map of string keys to string values",
        ));
        return;
    };
    for (k, v) in map {
        if let Err(e) = labels::validate_key(k) {
            c.push(Cause::invalid(field, &json!(k), e));
        }
        match v.as_str() {
            Some(s) => {
                if let Err(e) = labels::validate_value(s) {
                    c.push(Cause::invalid(field.to_string(), &json!(s), e));
                }
            }
            None => c.push(Cause::invalid(field, v, "label values must be strings")),
        }
    }
}

fn non_negative(obj: &Value, key: &str, field: &str, c: &mut Vec<Cause>) {
    if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
        match v.as_i64() {
            Some(n) if n >= 0 => {}
            Some(_) => c.push(Cause::invalid(
                field,
                v,
                "must be greater than or equal to 0",
            )),
            None => c.push(Cause::invalid(field, v, "must be an integer")),
        }
    }
}

fn validate_workload(res: &Resource, spec: &Value, c: &mut Vec<Cause>) {
    non_negative(spec, "replicas", "spec.replicas", c);
    non_negative(spec, "minReadySeconds", "spec.minReadySeconds", c);
    non_negative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit", c);
    let selector = spec.get("selector");
    match selector {
        None | Some(Value::Null) => c.push(Cause::required("spec.selector")),
        Some(sel) => match Selector::from_label_selector(sel) {
            Err(e) => c.push(Cause::invalid("spec.selector", sel, e.to_string())),
            Ok(s) if s.is_empty() => c.push(Cause::invalid(
                "spec.selector",
                sel,
                "empty selector is invalid for deployment",
            )),
            Ok(s) => {
                let tl = spec
                    .pointer("/template/metadata/labels")
                    .and_then(Value::as_object);
                if !s.matches(tl) {
                    c.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        spec.pointer("/template/metadata/labels")
                            .unwrap_or(&Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    validate_template(spec, "spec.template", c);
    if res.plural == "deployments" {
        if let Some(ru) = spec.pointer("/strategy/rollingUpdate") {
            let zero = |k: &str| {
                matches!(ru.get(k), Some(Value::Number(n)) if n.as_i64() == Some(0))
                    || ru.get(k) == Some(&json!("0%"))
            };
            if zero("maxSurge") && zero("maxUnavailable") {
                c.push(Cause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    ru.get("maxUnavailable").unwrap_or(&Value::Null),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        if let Some(t) = spec.pointer("/strategy/type").and_then(Value::as_str) {
            if !matches!(t, "RollingUpdate" | "Recreate") {
                c.push(Cause::not_supported(
                    "spec.strategy.type",
                    &json!(t),
                    &["Recreate", "RollingUpdate"],
                ));
            }
        }
    }
}

fn validate_template(spec: &Value, field: &str, c: &mut Vec<Cause>) {
    match spec.get("template") {
        None | Some(Value::Null) => c.push(Cause::required(field)),
        Some(t) => {
            if let Some(l) = t.pointer("/metadata/labels") {
                validate_labels(l, &format!("{field}.metadata.labels"), c);
            }
            validate_pod_spec(
                t.get("spec").unwrap_or(&Value::Null),
                &format!("{field}.spec"),
                c,
            );
        }
    }
}

pub fn validate_pod_spec(spec: &Value, field: &str, c: &mut Vec<Cause>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|cs| cs.is_empty()) {
        c.push(Cause::required(format!("{field}.containers")));
    }
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, ctr) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let f = format!("{field}.{list}[{i}]");
            container_name_and_image(ctr, &f, &mut seen, c);
            for (j, p) in ctr
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                port_number(
                    p.get("containerPort"),
                    &format!("{f}.ports[{j}].containerPort"),
                    true,
                    c,
                );
                if p.get("hostPort").is_some() {
                    port_number(
                        p.get("hostPort"),
                        &format!("{f}.ports[{j}].hostPort"),
                        false,
                        c,
                    );
                }
                protocol(p, &format!("{f}.ports[{j}].protocol"), c);
            }
            for kind in ["requests", "limits"] {
                if let Some(m) = ctr
                    .pointer(&format!("/resources/{kind}"))
                    .and_then(Value::as_object)
                {
                    for (r, q) in m {
                        let qf = format!("{f}.resources.{kind}[{r}]");
                        match q.as_str().map(Quantity::parse).or_else(|| q.as_f64().map(|n| Quantity::parse(&n.to_string()))) {
                            Some(Ok(qty)) if qty.is_negative() => c.push(Cause::invalid(qf, q, "must be greater than or equal to 0")),
                            Some(Ok(_)) => {}
                            _ => c.push(Cause::invalid(qf, q, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
                        }
                    }
                }
            }
            if let (Some(req), Some(lim)) = (
                ctr.pointer("/resources/requests")
                    .and_then(Value::as_object),
                ctr.pointer("/resources/limits").and_then(Value::as_object),
            ) {
                for (r, q) in req {
                    let parse = |v: &Value| v.as_str().and_then(|s| Quantity::parse(s).ok());
                    if let (Some(qv), Some(lv)) = (parse(q), lim.get(r).and_then(parse)) {
                        if qv > lv {
                            c.push(Cause::invalid(
                                format!("{f}.resources.requests"),
                                q,
                                format!(
                                    "must be less than or equal to {r} limit of {}",
                                    lim[r].as_str().unwrap_or("")
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !matches!(rp, "Always" | "OnFailure" | "Never") {
            c.push(Cause::not_supported(
                format!("{field}.restartPolicy"),
                &json!(rp),
                &["Always", "Never", "OnFailure"],
            ));
        }
    }
    if let Some(dp) = spec.get("dnsPolicy").and_then(Value::as_str) {
        if !matches!(
            dp,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        ) {
            c.push(Cause::not_supported(
                format!("{field}.dnsPolicy"),
                &json!(dp),
                &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
            ));
        }
    }
    if let Some(ns) = spec.get("nodeSelector") {
        validate_labels(ns, &format!("{field}.nodeSelector"), c);
    }
}

/// A container's name (a DNS label, unique among the pod's `seen` names)
/// and its image, at field path `f`.
fn container_name_and_image(
    ctr: &Value,
    f: &str,
    seen: &mut std::collections::HashSet<String>,
    c: &mut Vec<Cause>,
) {
    match ctr.get("name").and_then(Value::as_str) {
        None | Some("") => c.push(Cause::required(format!("{f}.name"))),
        Some(n) => {
            if !names::is_dns1123_label(n) {
                c.push(Cause::invalid(
                    format!("{f}.name"),
                    &json!(n),
                    names::DNS1123_LABEL_MSG,
                ));
            }
            if !seen.insert(n.to_string()) {
                c.push(Cause::duplicate(format!("{f}.name"), &json!(n)));
            }
        }
    }
    if ctr
        .get("image")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
    {
        c.push(Cause::required(format!("{f}.image")));
    }
}

/// A container's name ("" when it has none).
fn name_of(ctr: &Value) -> &str {
    ctr.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The containers of `spec[key]`.
fn list_of<'a>(spec: &'a Value, key: &str) -> &'a [Value] {
    spec.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Fields an ephemeral container may not set (upstream's
/// allowedEphemeralContainerFields, the ones it refuses): they would make it
/// part of the workload.
const NOT_FOR_EPHEMERAL: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

/// Upstream's rules for spec.ephemeralContainers: none on create; on update
/// the existing ones stay as they are, and each added one has a unique
/// name, an image, none of the workload's fields, and a target among the
/// pod's containers.
fn validate_ephemeral_containers(spec: &Value, old_spec: Option<&Value>, c: &mut Vec<Cause>) {
    // Every pod update (status writes too) comes here: borrow, copy nothing.
    let field = "spec.ephemeralContainers";
    let ephemeral = list_of(spec, "ephemeralContainers");
    let Some(old_spec) = old_spec else {
        if !ephemeral.is_empty() {
            c.push(Cause::forbidden(field, "cannot be set on create"));
        }
        return;
    };
    let old_ephemeral = list_of(old_spec, "ephemeralContainers");
    for old in old_ephemeral {
        let old_name = name_of(old);
        match ephemeral.iter().find(|e| name_of(e) == old_name) {
            None => c.push(Cause::forbidden(
                field,
                format!("existing ephemeral containers {old_name:?} may not be removed"),
            )),
            Some(new) if new != old => c.push(Cause::forbidden(
                format!("{field}[{old_name}]"),
                format!("existing ephemeral containers {old_name:?} may not be changed"),
            )),
            Some(_) => {}
        }
    }
    // The ones already there passed these checks when they were added.
    if ephemeral.len() == old_ephemeral.len() {
        return;
    }
    let pod_containers: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| list_of(spec, l))
        .map(name_of)
        .collect();
    let mut seen: std::collections::HashSet<String> =
        pod_containers.iter().map(|n| n.to_string()).collect();
    for (i, ctr) in ephemeral.iter().enumerate() {
        let f = format!("{field}[{i}]");
        container_name_and_image(ctr, &f, &mut seen, c);
        for key in NOT_FOR_EPHEMERAL {
            let set = match ctr.get(*key) {
                None | Some(Value::Null) => false,
                Some(Value::Object(m)) => !m.is_empty() && m.values().any(|v| !v.is_null()),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::String(s)) => !s.is_empty(),
                Some(_) => true,
            };
            if set {
                c.push(Cause::forbidden(
                    format!("{f}.{key}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, m) in ctr
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for key in ["subPath", "subPathExpr"] {
                if m.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    c.push(Cause::forbidden(
                        format!("{f}.volumeMounts[{j}].{key}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
        if let Some(target) = ctr.get("targetContainerName").and_then(Value::as_str) {
            if !target.is_empty() && !pod_containers.contains(&target) {
                c.push(Cause::not_found(
                    format!("{f}.targetContainerName"),
                    &json!(target),
                ));
            }
        }
    }
}

fn port_number(v: Option<&Value>, field: &str, required: bool, c: &mut Vec<Cause>) {
    match v {
        None | Some(Value::Null) if required => c.push(Cause::required(field)),
        None | Some(Value::Null) => {}
        Some(v) => match v.as_i64() {
            Some(n) if (1..=65535).contains(&n) => {}
            _ => c.push(Cause::invalid(
                field,
                v,
                "must be between 1 and 65535, inclusive",
            )),
        },
    }
}

fn protocol(p: &Value, field: &str, c: &mut Vec<Cause>) {
    if let Some(proto) = p.get("protocol").and_then(Value::as_str) {
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            c.push(Cause::not_supported(
                field,
                &json!(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

fn validate_service(spec: &Value, c: &mut Vec<Cause>) {
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        c.push(Cause::not_supported(
            "spec.type",
            &json!(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec.get("ports").and_then(Value::as_array);
    if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
        c.push(Cause::required("spec.ports"));
    }
    if ty == "ExternalName"
        && spec
            .get("externalName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        c.push(Cause::required("spec.externalName"));
    }
    let mut names_seen = std::collections::HashSet::new();
    let many = ports.map_or(0, Vec::len) > 1;
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let f = format!("spec.ports[{i}]");
        port_number(p.get("port"), &format!("{f}.port"), true, c);
        protocol(p, &format!("{f}.protocol"), c);
        match p.get("name").and_then(Value::as_str) {
            None | Some("") if many => c.push(Cause::required(format!("{f}.name"))),
            Some(n) if !n.is_empty() && !names_seen.insert(n.to_string()) => {
                c.push(Cause::duplicate(format!("{f}.name"), &json!(n)));
            }
            _ => {}
        }
        if let Some(tp) = p.get("targetPort") {
            match tp {
                Value::Number(_) => port_number(Some(tp), &format!("{f}.targetPort"), false, c),
                Value::String(s) if !s.is_empty() && s.len() <= 15 => {}
                other => c.push(Cause::invalid(
                    format!("{f}.targetPort"),
                    other,
                    "must contain at least one letter (a-z)",
                )),
            }
        }
    }
    if let Some(sel) = spec.get("selector") {
        validate_labels(sel, "spec.selector", c);
    }
}

fn validate_config_keys(obj: &Value, c: &mut Vec<Cause>) {
    for section in ["data", "binaryData"] {
        for (k, _) in obj
            .get(section)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let ok = !k.is_empty()
                && k.len() <= 253
                && k.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
                && k != "."
                && k != "..";
            if !ok {
                c.push(Cause::invalid(format!("{section}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
        }
    }
}

fn validate_secret(obj: &Value, c: &mut Vec<Cause>) {
    use base64::Engine;
    validate_config_keys(obj, c);
    for (k, v) in obj
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let ok = v
            .as_str()
            .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
        if !ok {
            c.push(Cause::invalid(
                format!("data[{k}]"),
                v,
                "illegal base64 data",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{strategy, Part};

    fn pods() -> &'static Resource {
        skiff_machinery::catalog::by_kind("v1", "Pod").unwrap()
    }

    fn pod(ephemeral: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "busybox"}],
                        "ephemeralContainers": ephemeral}})
    }

    fn debugger(name: &str) -> Value {
        json!({"name": name, "image": "busybox", "stdin": true, "tty": true})
    }

    /// The causes of writing `body` through the ephemeralcontainers
    /// subresource over `old`, and what would be stored.
    fn through_subresource(old: &Value, body: &Value) -> (Vec<String>, Value) {
        let mut new = body.clone();
        strategy::prepare_update(pods(), old, &mut new, Part::EphemeralContainers);
        let causes = validate(pods(), &new, Some(old))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        (causes, new)
    }

    #[test]
    fn ephemeral_containers_cannot_be_set_on_create() {
        let causes = validate(pods(), &pod(json!([debugger("d")])), None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.ephemeralContainers");
        assert_eq!(causes[0].message, "Forbidden: cannot be set on create");
    }

    #[test]
    fn the_subresource_adds_ephemeral_containers_and_changes_nothing_else() {
        let old = pod(json!([]));
        let mut body = pod(json!([debugger("d")]));
        body["spec"]["containers"][0]["image"] = json!("changed");
        body["metadata"]["labels"] = json!({"sneaked": "in"});
        let (causes, stored) = through_subresource(&old, &body);
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(stored["spec"]["containers"][0]["image"], "busybox");
        assert!(stored["metadata"].get("labels").is_none());
        let d = &stored["spec"]["ephemeralContainers"][0];
        assert_eq!(d["name"], "d");
        // Upstream's container defaults.
        assert_eq!(d["imagePullPolicy"], "Always");
        assert_eq!(d["terminationMessagePolicy"], "File");
    }

    #[test]
    fn a_main_resource_write_leaves_ephemeral_containers_as_they_were() {
        let old = pod(json!([]));
        let mut new = pod(json!([debugger("d")]));
        strategy::prepare_update(pods(), &old, &mut new, Part::Main);
        assert!(new["spec"].get("ephemeralContainers").is_none(), "{new}");
    }

    #[test]
    fn existing_ephemeral_containers_are_neither_removed_nor_changed() {
        let (_, old) = through_subresource(&pod(json!([])), &pod(json!([debugger("d")])));
        let (causes, _) = through_subresource(&old, &pod(json!([debugger("e")])));
        assert_eq!(
            causes,
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"d\" may not be removed"]
        );
        let mut changed = old.clone();
        changed["spec"]["ephemeralContainers"][0]["image"] = json!("other");
        let (causes, _) = through_subresource(&old, &changed);
        assert_eq!(
            causes,
            ["spec.ephemeralContainers[d]: Forbidden: existing ephemeral containers \"d\" may not be changed"]
        );
    }

    #[test]
    fn an_added_ephemeral_container_is_checked_as_upstream_does() {
        let old = pod(json!([]));
        let mut bad = debugger("app");
        bad["ports"] = json!([{"containerPort": 80}]);
        bad["readinessProbe"] = json!({"exec": {"command": ["true"]}});
        bad["targetContainerName"] = json!("nope");
        bad["image"] = json!("");
        let (causes, _) = through_subresource(&old, &pod(json!([bad])));
        assert_eq!(
            causes,
            [
                "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[0].image: Required value",
                "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\"",
            ]
        );
        let mut targeted = debugger("d");
        targeted["targetContainerName"] = json!("app");
        let (causes, _) = through_subresource(&old, &pod(json!([targeted])));
        assert!(causes.is_empty(), "{causes:?}");
    }
}
