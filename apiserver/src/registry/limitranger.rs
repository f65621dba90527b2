//! LimitRanger admission, as upstream's plugin: a pod created in a
//! namespace with LimitRanges gets each `Container` item's `default`
//! limits and `defaultRequest` requests where its containers set none
//! (noted in the `kubernetes.io/limit-ranger` annotation), and then must
//! keep within every item's `min`, `max` and `maxLimitRequestRatio`, per
//! container or, for `Pod` items, summed over the pod; a claim must keep
//! within `PersistentVolumeClaim` items. A refusal is a 403 naming each
//! broken bound. Also the LimitRange defaults upstream gives each item.

use super::Registry;
use crate::error::ApiError;
use crate::meta;
use serde_json::{json, Map, Value};
use skiff_machinery::catalog;
use skiff_machinery::quota::{amounts, pod_total, Amount, Usage};

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The namespace's LimitRange items.
fn items(reg: &Registry, ns: &str) -> Vec<Value> {
    let res = catalog::lookup("", "v1", "limitranges").expect("catalog");
    reg.cache(res)
        .list(&format!("{}{ns}/", res.key_prefix()))
        .0
        .iter()
        .flat_map(|e| {
            e.object()["spec"]["limits"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// Upstream's SetDefaults_LimitRangeItem: for a `Container` item, the
/// default limit falls back to the max, the default request to the default
/// limit, then to the min.
pub fn default_limit_range(obj: &mut Value) {
    let Some(limits) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in limits.iter_mut().filter_map(Value::as_object_mut) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let mut default = item
            .get("default")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut request = item
            .get("defaultRequest")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        fill(&mut default, item.get("max"));
        fill(&mut request, Some(&Value::Object(default.clone())));
        fill(&mut request, item.get("min"));
        if !default.is_empty() {
            item.insert("default".into(), Value::Object(default));
        }
        if !request.is_empty() {
            item.insert("defaultRequest".into(), Value::Object(request));
        }
    }
}

/// Adds to `into` the entries of `from` it lacks.
fn fill(into: &mut Map<String, Value>, from: Option<&Value>) {
    for (k, v) in from.and_then(Value::as_object).into_iter().flatten() {
        into.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// Defaults and checks a pod being created.
pub fn admit_pod(reg: &Registry, pod: &mut Value) -> Result<(), ApiError> {
    let ns = meta::namespace(pod).unwrap_or("default").to_string();
    let items = items(reg, &ns);
    if items.is_empty() {
        return Ok(());
    }
    set_defaults(pod, &items);
    let errors = pod_violations(&pod["spec"], &items);
    refuse("pods", meta::name(pod), errors)
}

/// Checks a claim being created.
pub fn admit_claim(reg: &Registry, claim: &Value) -> Result<(), ApiError> {
    let ns = meta::namespace(claim).unwrap_or("default");
    let requests = amounts(claim.pointer("/spec/resources/requests"));
    let mut errors = Vec::new();
    for item in items(reg, ns)
        .iter()
        .filter(|i| i["type"] == "PersistentVolumeClaim")
    {
        let ty = "PersistentVolumeClaim";
        for (k, min) in amounts(item.get("min")) {
            errors.extend(below_min(ty, &k, min, &requests, &Usage::new()));
        }
        for (k, max) in amounts(item.get("max")) {
            let text = max.text();
            match requests.get(&k) {
                None => errors.push(format!(
                    "maximum {k} usage per {ty} is {text}.  No request is specified"
                )),
                Some(r) if r.quantity > max.quantity => errors.push(format!(
                    "maximum {k} usage per {ty} is {text}, but request is {}",
                    r.text()
                )),
                Some(_) => {}
            }
        }
    }
    refuse("persistentvolumeclaims", meta::name(claim), errors)
}

/// Upstream's wording: one error as it is, several as a list.
fn refuse(plural: &str, name: &str, errors: Vec<String>) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut errors: Vec<String> = errors
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    let detail = match errors.len() {
        0 => return Ok(()),
        1 => errors.remove(0),
        _ => format!("[{}]", errors.join(", ")),
    };
    Err(ApiError::forbidden(format!(
        "{plural} \"{name}\" is forbidden: {detail}"
    )))
}

/// Gives every container the `Container` items' defaults it lacks.
fn set_defaults(pod: &mut Value, items: &[Value]) {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for item in items.iter().filter(|i| i["type"] == "Container") {
        fill(&mut requests, item.get("defaultRequest"));
        fill(&mut limits, item.get("default"));
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let containers = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("").to_string();
            let Some(res) = c
                .as_object_mut()
                .map(|c| c.entry("resources").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (field, defaults, noun) in [
                ("requests", &requests, "request"),
                ("limits", &limits, "limit"),
            ] {
                let Some(current) = res
                    .entry(field)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                else {
                    continue;
                };
                let mut set: Vec<&str> = Vec::new();
                for (k, v) in defaults {
                    if !current.contains_key(k) {
                        current.insert(k.clone(), v.clone());
                        set.push(k);
                    }
                }
                if !set.is_empty() {
                    set.sort();
                    notes.push(format!("{} {noun} for {what} {name}", set.join(", ")));
                }
            }
            // Empty lists are not written, as Go's encoder omits them.
            res.retain(|_, v| v.as_object().is_none_or(|m| !m.is_empty()));
        }
    }
    if !notes.is_empty() {
        let annotations = meta::metadata_mut(pod)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(
                ANNOTATION.into(),
                json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
            );
        }
    }
}

/// Every bound of `items` the pod spec breaks, in upstream's words.
fn pod_violations(spec: &Value, items: &[Value]) -> Vec<String> {
    let containers =
        |list: &str| -> Vec<&Value> { spec[list].as_array().into_iter().flatten().collect() };
    let mut errors = Vec::new();
    for item in items {
        let ty = item["type"].as_str().unwrap_or("");
        let check = |errors: &mut Vec<String>, req: &Usage, lim: &Usage| {
            for (k, min) in amounts(item.get("min")) {
                errors.extend(below_min(ty, &k, min, req, lim));
            }
            for (k, max) in amounts(item.get("max")) {
                errors.extend(above_max(ty, &k, max, req, lim));
            }
            for (k, ratio) in amounts(item.get("maxLimitRequestRatio")) {
                errors.extend(over_ratio(ty, &k, ratio, req, lim));
            }
        };
        match ty {
            "Container" => {
                for c in containers("containers")
                    .into_iter()
                    .chain(containers("initContainers"))
                {
                    let req = amounts(c.pointer("/resources/requests"));
                    let lim = amounts(c.pointer("/resources/limits"));
                    check(&mut errors, &req, &lim);
                }
            }
            "Pod" => {
                check(
                    &mut errors,
                    &pod_total(spec, "requests"),
                    &pod_total(spec, "limits"),
                );
            }
            _ => {}
        }
    }
    errors
}

fn below_min(ty: &str, k: &str, min: Amount, req: &Usage, lim: &Usage) -> Option<String> {
    let text = min.text();
    let Some(r) = req.get(k) else {
        return Some(format!(
            "minimum {k} usage per {ty} is {text}.  No request is specified"
        ));
    };
    if r.quantity < min.quantity {
        return Some(format!(
            "minimum {k} usage per {ty} is {text}, but request is {}",
            r.text()
        ));
    }
    match lim.get(k) {
        Some(l) if l.quantity < min.quantity => Some(format!(
            "minimum {k} usage per {ty} is {text}, but limit is {}",
            l.text()
        )),
        _ => None,
    }
}

fn above_max(ty: &str, k: &str, max: Amount, req: &Usage, lim: &Usage) -> Option<String> {
    let text = max.text();
    let Some(l) = lim.get(k) else {
        return Some(format!(
            "maximum {k} usage per {ty} is {text}.  No limit is specified"
        ));
    };
    if l.quantity > max.quantity {
        return Some(format!(
            "maximum {k} usage per {ty} is {text}, but limit is {}",
            l.text()
        ));
    }
    match req.get(k) {
        Some(r) if r.quantity > max.quantity => Some(format!(
            "maximum {k} usage per {ty} is {text}, but request is {}",
            r.text()
        )),
        _ => None,
    }
}

fn over_ratio(ty: &str, k: &str, ratio: Amount, req: &Usage, lim: &Usage) -> Option<String> {
    let millis = |u: &Usage| u.get(k).map(|a| a.quantity.millis).filter(|m| *m != 0);
    let (r, l) = (millis(req), millis(lim));
    let prefix = format!(
        "{k} max limit to request ratio per {ty} is {}",
        ratio.text()
    );
    let (Some(r), Some(l)) = (r, l) else {
        return Some(if r.is_none() {
            format!("{prefix}, but no request is specified or request is 0")
        } else {
            format!("{prefix}, but no limit is specified or limit is 0")
        });
    };
    let observed = l as f64 / r as f64;
    (observed * 1000.0 > ratio.quantity.millis as f64)
        .then(|| format!("{prefix}, but provided ratio is {observed:.6}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn limit_range_items_get_upstreams_defaults() {
        let mut lr = json!({"spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}},
            {"type": "Pod", "max": {"cpu": "4"}},
        ]}});
        default_limit_range(&mut lr);
        let c = &lr["spec"]["limits"][0];
        assert_eq!(c["default"], json!({"cpu": "2"}));
        assert_eq!(c["defaultRequest"], json!({"cpu": "2", "memory": "64Mi"}));
        assert!(lr["spec"]["limits"][1].get("default").is_none());
    }

    #[test]
    fn containers_get_the_defaults_they_lack_and_a_note() {
        let items = [json!({"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "250m", "memory": "64Mi"}})];
        let mut p = pod(json!([
            {"name": "a", "image": "x"},
            {"name": "b", "image": "x", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
        ]));
        set_defaults(&mut p, &items);
        assert_eq!(
            p["spec"]["containers"][0]["resources"],
            json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}})
        );
        assert_eq!(
            p["spec"]["containers"][1]["resources"],
            json!({"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}})
        );
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; memory request for container b; memory limit for container b"
        );
    }

    #[test]
    fn bounds_are_checked_in_upstreams_words() {
        let items = [
            json!({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"},
                   "maxLimitRequestRatio": {"memory": "2"}}),
            json!({"type": "Pod", "max": {"memory": "1Gi"}}),
        ];
        let spec = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "2", "memory": "800Mi"}, "requests": {"memory": "32Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "500m", "memory": "300Mi"}, "requests": {"memory": "300Mi"}}},
        ]});
        let errors = pod_violations(&spec, &items);
        assert_eq!(
            errors,
            [
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "memory max limit to request ratio per Container is 2, but provided ratio is 25.000000",
                "maximum memory usage per Pod is 1Gi, but limit is 1100Mi",
            ]
        );
        let e = refuse("pods", "p", errors).unwrap_err();
        assert!(
            e.to_string()
                .contains("pods \"p\" is forbidden: [minimum memory"),
            "{e}"
        );
    }
}
