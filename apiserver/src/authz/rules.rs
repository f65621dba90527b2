//! PolicyRules and what they allow, as upstream's RBAC evaluates them:
//! `*` matches any verb, group, resource or URL; `*/status` matches that
//! subresource of any resource; a URL ending in `*` is a prefix; an empty
//! resourceNames list matches every name.

use super::Attributes;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub names: Vec<String>,
    pub urls: Vec<String>,
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn statics(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl PolicyRule {
    pub fn from_json(v: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(v, "verbs"),
            groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            names: strings(v, "resourceNames"),
            urls: strings(v, "nonResourceURLs"),
        }
    }

    pub fn from_policy(r: &super::policy::Rule) -> PolicyRule {
        PolicyRule {
            verbs: statics(r.verbs),
            groups: statics(r.groups),
            resources: statics(r.resources),
            names: statics(r.names),
            urls: statics(r.urls),
        }
    }

    /// The rule as a PolicyRule object, absent lists left out.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (field, list) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.groups),
            ("resources", &self.resources),
            ("resourceNames", &self.names),
            ("nonResourceURLs", &self.urls),
        ] {
            if !list.is_empty() || field == "verbs" {
                out.insert(field.into(), serde_json::json!(list));
            }
        }
        Value::Object(out)
    }

    /// Whether this rule allows the request.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verbs.iter().any(|v| v == "*" || *v == a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.urls.iter().any(|u| url_matches(u, &a.path));
        }
        self.groups.iter().any(|g| g == "*" || *g == a.group)
            && self
                .resources
                .iter()
                .any(|r| resource_matches(r, &a.resource, &a.subresource))
            && (self.names.is_empty() || self.names.contains(&a.name))
    }
}

fn resource_matches(rule: &str, resource: &str, subresource: &str) -> bool {
    if rule == "*" {
        return true;
    }
    if subresource.is_empty() {
        return rule == resource;
    }
    match rule.split_once('/') {
        Some((r, s)) => (r == "*" || r == resource) && s == subresource,
        None => false,
    }
}

fn url_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

/// Whether any of the rules allows the request.
pub fn any_allows(rules: &[PolicyRule], a: &Attributes) -> bool {
    rules.iter().any(|r| r.allows(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: statics(verbs),
            groups: statics(groups),
            resources: statics(resources),
            names: statics(names),
            urls: vec![],
        }
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            resource_request: true,
            ..Attributes::default()
        }
    }

    #[test]
    fn subresources_need_their_own_rule_or_a_star() {
        let pods = rule(&["get"], &[""], &["pods"], &[]);
        assert!(pods.allows(&attrs("get", "", "pods", "", "p")));
        assert!(!pods.allows(&attrs("get", "", "pods", "log", "p")));
        let logs = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(logs.allows(&attrs("get", "", "pods", "log", "p")));
        let any_status = rule(&["patch"], &["*"], &["*/status"], &[]);
        assert!(any_status.allows(&attrs("patch", "apps", "deployments", "status", "d")));
        assert!(!any_status.allows(&attrs("patch", "apps", "deployments", "", "d")));
        let all = rule(&["*"], &["*"], &["*"], &[]);
        assert!(all.allows(&attrs("delete", "apps", "deployments", "scale", "d")));
    }

    #[test]
    fn groups_verbs_and_names_must_match() {
        let r = rule(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-scheduler"],
        );
        assert!(r.allows(&attrs(
            "get",
            "coordination.k8s.io",
            "leases",
            "",
            "kube-scheduler"
        )));
        assert!(!r.allows(&attrs("get", "coordination.k8s.io", "leases", "", "other")));
        assert!(!r.allows(&attrs("list", "coordination.k8s.io", "leases", "", "")));
        assert!(!r.allows(&attrs("get", "", "leases", "", "kube-scheduler")));
    }

    #[test]
    fn urls_match_exactly_or_by_prefix() {
        let r = PolicyRule {
            verbs: statics(&["get"]),
            urls: statics(&["/healthz", "/apis/*"]),
            ..PolicyRule::default()
        };
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: p.into(),
            ..Attributes::default()
        };
        assert!(r.allows(&path("/healthz")));
        assert!(!r.allows(&path("/healthz/etcd")));
        assert!(r.allows(&path("/apis/apps/v1")));
        assert!(!r.allows(&path("/api")));
    }
}
