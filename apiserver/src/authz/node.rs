//! The Node authorizer: a node (user `system:node:<name>`, group
//! `system:nodes`) may read the secrets, config maps, claims, volumes and
//! service account tokens of the pods bound to it and nothing else of
//! those kinds, use its own Lease, and otherwise do what the `system:node`
//! ClusterRole says. Upstream keeps a graph of these relations; skiff asks
//! the pod and claim caches at the time of the request, which is the same
//! answer.

use super::rules::PolicyRule;
use super::Attributes;
use crate::auth::User;
use crate::watchcache::WatchCache;
use serde_json::Value;
use skiff_machinery::fields::Selector as FieldSelector;
use skiff_machinery::labels::Selector as LabelSelector;
use std::sync::Arc;

pub const NODES_GROUP: &str = "system:nodes";
const NODE_LEASES: &str = "kube-node-lease";

/// The node a user is, if it is one (`Some("")` for a member of
/// system:nodes whose name does not say which).
pub fn node_name(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    Some(user.name.strip_prefix("system:node:").unwrap_or(""))
}

/// What a pod can point at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

pub struct NodeAuthorizer {
    pub pods: Arc<WatchCache>,
    pub claims: Arc<WatchCache>,
}

/// The node authorizer's answer: Ok to allow, Err(reason) for no opinion.
pub type Decision = Result<(), String>;

impl NodeAuthorizer {
    /// `node` is the node's name, never empty (see `node_name`).
    pub fn authorize(&self, node: &str, a: &Attributes, node_rules: &[PolicyRule]) -> Decision {
        if a.resource_request {
            match (a.group.as_str(), a.resource.as_str()) {
                ("", "secrets") => return self.read_namespaced(node, Kind::Secret, a),
                ("", "configmaps") => return self.read_namespaced(node, Kind::ConfigMap, a),
                ("", "persistentvolumeclaims") => {
                    if a.subresource == "status" {
                        return self.status_update(node, a);
                    }
                    return self.get(node, a, |n, a| self.claim_related(n, &a.namespace, &a.name));
                }
                ("", "persistentvolumes") => {
                    return self.get(node, a, |n, a| self.volume_related(n, &a.name));
                }
                ("", "serviceaccounts") => return self.create_token(node, a),
                ("coordination.k8s.io", "leases") => return lease(node, a),
                _ => {}
            }
        }
        if super::rules::any_allows(node_rules, a) {
            Ok(())
        } else {
            Err(String::new())
        }
    }

    fn read_namespaced(&self, node: &str, kind: Kind, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return Err("can only read resources of this type".into());
        }
        if !a.subresource.is_empty() {
            return Err("cannot read subresource".into());
        }
        if a.namespace.is_empty() {
            return Err("can only read namespaced object of this type".into());
        }
        self.related(node, a, |n, a| {
            self.pod_refers(n, &a.namespace, kind, &a.name)
        })
    }

    fn get(
        &self,
        node: &str,
        a: &Attributes,
        related: impl Fn(&str, &Attributes) -> bool,
    ) -> Decision {
        if a.verb != "get" {
            return Err("can only get individual resources of this type".into());
        }
        if !a.subresource.is_empty() {
            return Err("cannot get subresource".into());
        }
        self.related(node, a, related)
    }

    fn status_update(&self, node: &str, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "update" | "patch") {
            return Err("can only get/update/patch this type".into());
        }
        self.related(node, a, |n, a| self.claim_related(n, &a.namespace, &a.name))
    }

    fn create_token(&self, node: &str, a: &Attributes) -> Decision {
        if a.verb != "create" || a.name.is_empty() {
            return Err("can only create tokens for individual service accounts".into());
        }
        if a.subresource != "token" {
            return Err("can only create token subresource of serviceaccount".into());
        }
        self.related(node, a, |n, a| {
            self.pod_refers(n, &a.namespace, Kind::ServiceAccount, &a.name)
        })
    }

    fn related(
        &self,
        node: &str,
        a: &Attributes,
        related: impl Fn(&str, &Attributes) -> bool,
    ) -> Decision {
        if a.name.is_empty() {
            return Err("No Object name found".into());
        }
        if related(node, a) {
            Ok(())
        } else {
            Err(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    /// The pods of a namespace bound to the node.
    fn pods_on(&self, node: &str, namespace: &str) -> Vec<Value> {
        let on_node = FieldSelector::parse(&format!("spec.nodeName={node}")).unwrap_or_default();
        let (entries, _) = self.pods.list(&format!("{}{namespace}/", self.pods.prefix));
        entries
            .iter()
            .filter(|e| e.matches(&LabelSelector::default(), &on_node))
            .map(|e| e.object())
            .collect()
    }

    fn pod_refers(&self, node: &str, namespace: &str, kind: Kind, name: &str) -> bool {
        self.pods_on(node, namespace)
            .iter()
            .any(|pod| references(pod, kind).iter().any(|n| n == name))
    }

    fn claim_related(&self, node: &str, namespace: &str, claim: &str) -> bool {
        self.pod_refers(node, namespace, Kind::Claim, claim)
    }

    /// Whether a volume is bound to a claim of a pod on the node.
    fn volume_related(&self, node: &str, volume: &str) -> bool {
        let (claims, _) = self.claims.list(&self.claims.prefix);
        claims.iter().any(|c| {
            let c = c.object();
            c.pointer("/spec/volumeName").and_then(Value::as_str) == Some(volume)
                && match (
                    c.pointer("/metadata/namespace").and_then(Value::as_str),
                    c.pointer("/metadata/name").and_then(Value::as_str),
                ) {
                    (Some(ns), Some(name)) => self.claim_related(node, ns, name),
                    _ => false,
                }
        })
    }
}

/// A node may use its own Lease in kube-node-lease (and create one, whose
/// name the request does not carry).
fn lease(node: &str, a: &Attributes) -> Decision {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return Err("can only get, create, update, patch, or delete a node lease".into());
    }
    if a.namespace != NODE_LEASES {
        return Err(format!(
            "can only access leases in the {NODE_LEASES:?} system namespace"
        ));
    }
    if a.verb != "create" && a.name != node {
        return Err("can only access node lease with the same name as the requesting node".into());
    }
    Ok(())
}

/// The elements of an array field (none if absent).
fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The names of objects of a kind a pod refers to.
fn references(pod: &Value, kind: Kind) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &pod["spec"];
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            out.push(s.to_string());
        }
    };
    if kind == Kind::ServiceAccount {
        push(&spec["serviceAccountName"]);
        return out;
    }
    if kind == Kind::Secret {
        for s in items(&spec["imagePullSecrets"]) {
            push(&s["name"]);
        }
    }
    for v in items(&spec["volumes"]) {
        match kind {
            Kind::Secret => {
                push(&v["secret"]["secretName"]);
                push(&v["csi"]["nodePublishSecretRef"]["name"]);
                for s in items(&v["projected"]["sources"]) {
                    push(&s["secret"]["name"]);
                }
            }
            Kind::ConfigMap => {
                push(&v["configMap"]["name"]);
                for s in items(&v["projected"]["sources"]) {
                    push(&s["configMap"]["name"]);
                }
            }
            Kind::Claim => {
                push(&v["persistentVolumeClaim"]["claimName"]);
                if v.get("ephemeral").is_some() {
                    if let (Some(pod), Some(vol)) = (
                        pod.pointer("/metadata/name").and_then(Value::as_str),
                        v["name"].as_str(),
                    ) {
                        push(&Value::String(format!("{pod}-{vol}")));
                    }
                }
            }
            Kind::ServiceAccount => {}
        }
    }
    if matches!(kind, Kind::Secret | Kind::ConfigMap) {
        let (key_ref, from_ref) = match kind {
            Kind::Secret => ("secretKeyRef", "secretRef"),
            _ => ("configMapKeyRef", "configMapRef"),
        };
        for field in ["initContainers", "containers", "ephemeralContainers"] {
            for c in items(&spec[field]) {
                for e in items(&c["env"]) {
                    push(&e["valueFrom"][key_ref]["name"]);
                }
                for e in items(&c["envFrom"]) {
                    push(&e[from_ref]["name"]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_refers_to_what_its_spec_names() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {
            "serviceAccountName": "app",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [
                {"name": "a", "secret": {"secretName": "tls"}},
                {"name": "b", "configMap": {"name": "conf"}},
                {"name": "c", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}, {"secret": {"name": "p"}}]}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
            ],
            "containers": [{"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                            "envFrom": [{"configMapRef": {"name": "env-cm"}}]}],
        }});
        assert_eq!(
            references(&pod, Kind::Secret),
            ["pull", "tls", "p", "env-secret"]
        );
        assert_eq!(
            references(&pod, Kind::ConfigMap),
            ["conf", "kube-root-ca.crt", "env-cm"]
        );
        assert_eq!(references(&pod, Kind::Claim), ["data", "web-e"]);
        assert_eq!(references(&pod, Kind::ServiceAccount), ["app"]);
    }

    #[test]
    fn a_node_uses_its_own_lease_only() {
        let a = |verb: &str, ns: &str, name: &str| Attributes {
            verb: verb.into(),
            namespace: ns.into(),
            name: name.into(),
            group: "coordination.k8s.io".into(),
            resource: "leases".into(),
            resource_request: true,
            ..Attributes::default()
        };
        assert!(lease("n1", &a("update", "kube-node-lease", "n1")).is_ok());
        assert!(lease("n1", &a("create", "kube-node-lease", "")).is_ok());
        assert!(lease("n1", &a("update", "kube-node-lease", "n2")).is_err());
        assert!(lease("n1", &a("get", "default", "n1")).is_err());
        assert!(lease("n1", &a("list", "kube-node-lease", "")).is_err());
    }
}
