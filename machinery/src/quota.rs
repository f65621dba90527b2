//! ResourceQuota accounting, shared by the admission that charges a quota
//! and the controller that recounts it (upstream's quota evaluators): what
//! an object uses by quota resource name, whether a quota's scopes cover
//! it, and what a pod must state when a quota limits compute resources.

use crate::quantity::{is_binary, Quantity};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// An amount of one quota resource, and whether it prints in binary units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub quantity: Quantity,
    pub binary: bool,
}

impl Amount {
    pub fn count(n: i128) -> Amount {
        Amount {
            quantity: Quantity { millis: n * 1000 },
            binary: false,
        }
    }

    pub fn parse(text: &str) -> Option<Amount> {
        Some(Amount {
            quantity: Quantity::parse(text).ok()?,
            binary: is_binary(text),
        })
    }

    pub fn plus(self, other: Amount) -> Amount {
        Amount {
            quantity: Quantity {
                millis: self.quantity.millis + other.quantity.millis,
            },
            binary: self.binary || other.binary,
        }
    }

    pub fn text(&self) -> String {
        self.quantity.canonical(self.binary)
    }
}

/// What an object uses, by quota resource name.
pub type Usage = BTreeMap<String, Amount>;

/// Adds `more` into `total`.
pub fn add(total: &mut Usage, more: &Usage) {
    for (k, v) in more {
        let sum = total.get(k).map_or(*v, |t| t.plus(*v));
        total.insert(k.clone(), sum);
    }
}

/// Upstream's `key=value,…`, sorted by name.
pub fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={}", v.text()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A quota's `spec.hard` or `status.hard`/`status.used` as amounts.
pub fn amounts(list: Option<&Value>) -> Usage {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Amount::parse(v.as_str()?)?)))
        .collect()
}

/// The object-count name of a resource: `count/<plural>[.<group>]`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The core kinds also counted under their bare plural (`pods: 10`).
const LEGACY_COUNTED: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// The compute resources a pod's containers request and limit.
const COMPUTE: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The resource (group, plural) whose objects a quota resource name counts.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    if LEGACY_COUNTED.contains(&name) {
        return Some((String::new(), name.to_string()));
    }
    let plural = if name.starts_with("services.") {
        "services"
    } else if name == "requests.storage" || name.contains(".storageclass.storage.k8s.io/") {
        "persistentvolumeclaims"
    } else if name.starts_with("requests.")
        || name.starts_with("limits.")
        || COMPUTE.contains(&name)
        || name.starts_with("hugepages-")
    {
        "pods"
    } else {
        return None;
    };
    Some((String::new(), plural.to_string()))
}

/// What `obj` (of `group`/`plural`) uses while it exists.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    if (group, plural) == ("", "pods") && !pod_counts(obj) {
        return u;
    }
    u.insert(count_name(group, plural), Amount::count(1));
    if group.is_empty() && LEGACY_COUNTED.contains(&plural) {
        u.insert(plural.to_string(), Amount::count(1));
    }
    match (group, plural) {
        ("", "pods") => {
            for field in ["requests", "limits"] {
                for (k, v) in pod_total(&obj["spec"], field) {
                    if field == "requests" && COMPUTE.contains(&k.as_str()) {
                        u.insert(k.clone(), v);
                    }
                    u.insert(format!("{field}.{k}"), v);
                }
            }
        }
        ("", "services") => {
            let spec = &obj["spec"];
            let ports = spec["ports"].as_array().map_or(0, Vec::len) as i128;
            match spec["type"].as_str() {
                Some("NodePort") => {
                    u.insert("services.nodeports".into(), Amount::count(ports));
                }
                Some("LoadBalancer") => {
                    u.insert("services.loadbalancers".into(), Amount::count(1));
                    if spec["allocateLoadBalancerNodePorts"] != false {
                        u.insert("services.nodeports".into(), Amount::count(ports));
                    }
                }
                _ => {}
            }
        }
        ("", "persistentvolumeclaims") => {
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(Amount::parse);
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                let prefix = format!("{class}.storageclass.storage.k8s.io/");
                u.insert(format!("{prefix}persistentvolumeclaims"), Amount::count(1));
                if let Some(s) = storage {
                    u.insert(format!("{prefix}requests.storage"), s);
                }
            }
            if let Some(s) = storage {
                u.insert("requests.storage".into(), s);
            }
        }
        _ => {}
    }
    u
}

/// Whether a pod still uses quota: not finished, and not past the end of
/// its deletion grace period (`deletionTimestamp`).
pub fn pod_counts(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let gone = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t < jiff::Timestamp::now());
    !gone
}

/// A pod's total of `field` (requests or limits) per resource, as upstream
/// sums it: the app containers and sidecars (init containers that restart
/// always) together, or an init container with the sidecars started
/// before it, whichever is larger.
pub fn pod_total(spec: &Value, field: &str) -> Usage {
    let of = |c: &Value| amounts(c.pointer(&format!("/resources/{field}")));
    let mut sum = Usage::new();
    let mut sidecars = Usage::new();
    let mut peak = Usage::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = of(c);
        if c["restartPolicy"] == "Always" {
            add(&mut sidecars, &own);
            add(&mut sum, &own);
        } else {
            let mut with_sidecars = sidecars.clone();
            add(&mut with_sidecars, &own);
            for (k, v) in with_sidecars
                .into_iter()
                .filter(|(k, _)| own.contains_key(k))
            {
                let p = peak.entry(k).or_insert(v);
                if v.quantity > p.quantity {
                    *p = v;
                }
            }
        }
    }
    for c in spec["containers"].as_array().into_iter().flatten() {
        add(&mut sum, &of(c));
    }
    for (k, p) in peak {
        let s = sum.entry(k).or_insert(p);
        if p.quantity > s.quantity {
            *s = p;
        }
    }
    sum
}

/// Whether `quota`'s scopes cover the object: scoped quotas cover pods
/// only, each scope (BestEffort, NotBestEffort, Terminating,
/// NotTerminating, PriorityClass) judged on the pod's spec.
pub fn scopes_cover(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let mut selectors: Vec<(String, String, Vec<String>)> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let values = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        selectors.push((
            e["scopeName"].as_str().unwrap_or("").to_string(),
            e["operator"].as_str().unwrap_or("").to_string(),
            values,
        ));
    }
    if selectors.is_empty() {
        return true;
    }
    if (group, plural) != ("", "pods") {
        return false;
    }
    let spec = &obj["spec"];
    // QoS BestEffort: no container requests or limits cpu or memory.
    let best_effort = ["initContainers", "containers"].iter().all(|list| {
        spec[*list].as_array().into_iter().flatten().all(|c| {
            ["requests", "limits"].iter().all(|f| {
                c["resources"][*f]
                    .as_object()
                    .is_none_or(|m| !m.contains_key("cpu") && !m.contains_key("memory"))
            })
        })
    });
    let terminating = spec["activeDeadlineSeconds"].as_i64().is_some();
    let class = spec["priorityClassName"].as_str().unwrap_or("");
    selectors
        .iter()
        .all(|(scope, op, values)| match scope.as_str() {
            "BestEffort" => best_effort,
            "NotBestEffort" => !best_effort,
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            "PriorityClass" => match op.as_str() {
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            },
            _ => false,
        })
}

/// Upstream's pod constraint for a quota on `hard`: every container must
/// request (or limit) each cpu and memory resource the quota limits.
/// The "must specify …" message when one does not.
pub fn missing_compute(hard: &Usage, pod: &Value) -> Option<String> {
    let required: Vec<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| {
            matches!(
                *k,
                "cpu"
                    | "memory"
                    | "requests.cpu"
                    | "requests.memory"
                    | "limits.cpu"
                    | "limits.memory"
            )
        })
        .collect();
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            for r in &required {
                let (field, name) = match r.split_once('.') {
                    Some((field, name)) => (field, name),
                    None => ("requests", *r),
                };
                let has = c["resources"][field]
                    .as_object()
                    .is_some_and(|m| m.contains_key(name));
                if !has {
                    missing
                        .entry(r.to_string())
                        .or_default()
                        .insert(c["name"].as_str().unwrap_or("").to_string());
                }
            }
        }
    }
    (!missing.is_empty()).then(|| {
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| {
                format!(
                    "{r} for: {}",
                    names.iter().cloned().collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        format!("must specify {}", parts.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(u: &Usage) -> BTreeMap<&str, String> {
        u.iter().map(|(k, v)| (k.as_str(), v.text())).collect()
    }

    #[test]
    fn a_pod_uses_its_count_and_compute() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1", "memory": "64Mi"}}},
        ]}});
        let u = usage("", "pods", &pod);
        assert_eq!(
            text(&u),
            BTreeMap::from([
                ("count/pods", "1".to_string()),
                ("cpu", "1250m".into()),
                ("limits.memory", "128Mi".into()),
                ("memory", "128Mi".into()),
                ("pods", "1".into()),
                ("requests.cpu", "1250m".into()),
                ("requests.memory", "128Mi".into()),
            ])
        );
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done).is_empty());
    }

    #[test]
    fn services_claims_and_other_kinds() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            text(&usage("", "services", &svc))["services.nodeports"],
            "2"
        );
        let claim = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        let claim_usage = usage("", "persistentvolumeclaims", &claim);
        let u = text(&claim_usage);
        assert_eq!(u["requests.storage"], "1Gi");
        assert_eq!(
            u["fast.storageclass.storage.k8s.io/requests.storage"],
            "1Gi"
        );
        let d = usage("apps", "deployments", &json!({}));
        assert_eq!(
            text(&d),
            BTreeMap::from([("count/deployments.apps", "1".to_string())])
        );
        assert_eq!(
            counted_resource("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            counted_resource("limits.cpu"),
            Some(("".into(), "pods".into()))
        );
        assert_eq!(
            counted_resource("services.loadbalancers"),
            Some(("".into(), "services".into()))
        );
    }

    #[test]
    fn scopes_judge_pods_and_skip_other_kinds() {
        let quota = |scopes: Value| json!({"spec": {"scopes": scopes}});
        let best = json!({"spec": {"containers": [{"name": "a"}]}});
        let burst = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
                                     "activeDeadlineSeconds": 10}});
        assert!(scopes_cover(
            &quota(json!(["BestEffort"])),
            "",
            "pods",
            &best
        ));
        assert!(!scopes_cover(
            &quota(json!(["BestEffort"])),
            "",
            "pods",
            &burst
        ));
        let disk_only = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"ephemeral-storage": "1Gi"}}}]}});
        assert!(
            scopes_cover(&quota(json!(["BestEffort"])), "", "pods", &disk_only),
            "QoS counts cpu and memory only"
        );
        assert!(scopes_cover(
            &quota(json!(["NotBestEffort", "Terminating"])),
            "",
            "pods",
            &burst
        ));
        assert!(!scopes_cover(
            &quota(json!(["BestEffort"])),
            "",
            "configmaps",
            &json!({})
        ));
        assert!(scopes_cover(
            &json!({"spec": {}}),
            "",
            "configmaps",
            &json!({})
        ));
        let pc = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let high = json!({"spec": {"priorityClassName": "high", "containers": []}});
        assert!(scopes_cover(&pc, "", "pods", &high));
        assert!(!scopes_cover(&pc, "", "pods", &best));
    }

    #[test]
    fn a_pod_total_counts_sidecars_and_the_largest_init_container() {
        let spec = json!({
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "2"}}},
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "300m"}}}],
        });
        assert_eq!(pod_total(&spec, "requests")["cpu"].text(), "2100m");
    }

    #[test]
    fn a_quota_on_compute_needs_every_container_to_state_it() {
        let hard = amounts(Some(
            &json!({"pods": "5", "limits.cpu": "2", "requests.memory": "1Gi"}),
        ));
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Mi"}}},
            {"name": "b"},
        ]}});
        assert_eq!(
            missing_compute(&hard, &pod).unwrap(),
            "must specify limits.cpu for: b; requests.memory for: b"
        );
        assert_eq!(pretty(&hard), "limits.cpu=2,pods=5,requests.memory=1Gi");
    }
}
