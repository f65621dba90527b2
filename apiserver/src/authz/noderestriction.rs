//! The NodeRestriction admission plugin: what `system:node` lets every
//! node do, a node may do only to itself and its own pods. It writes its
//! own Node object and Lease, the status of pods bound to it, deletes and
//! evicts those pods, and requests tokens bound to them; it creates no
//! pods (skiff has no static pods, so no mirror pods either) and changes
//! no taints once its Node exists. skiff's own addition: a node's DNS
//! server publishes one EndpointSlice of the kube-dns Service, and a node
//! writes no other.

use super::Attributes;
use crate::registry::Part;
use crate::watchcache::WatchCache;
use serde_json::Value;
use skiff_machinery::catalog::Resource;

fn node_of(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A create or update by `node` of `new` (over `old`).
pub fn admit_write(
    node: &str,
    res: &Resource,
    part: Part,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), String> {
    let name = crate::meta::name(new);
    match (res.group, res.plural) {
        ("", "nodes") => {
            if name != node {
                return Err(format!("node {node:?} is not allowed to modify node {name:?}"));
            }
            if let Some(old) = old {
                if old.pointer("/spec/taints") != new.pointer("/spec/taints") {
                    return Err(format!("node {node:?} is not allowed to modify taints"));
                }
            }
            Ok(())
        }
        ("", "pods") => match (old, part) {
            (None, _) => Err(format!(
                "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
            )),
            (Some(old), Part::Status) if node_of(old) == node => Ok(()),
            (Some(_), Part::Status) => Err(format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            )),
            (Some(_), _) => Err(format!(
                "unexpected operation \"UPDATE\", node {node:?} can only update pod status"
            )),
        },
        ("discovery.k8s.io", "endpointslices") if name != format!("kube-dns-{node}") => Err(format!(
            "node {node:?} may only write its own DNS server's EndpointSlice, \"kube-dns-{node}\""
        )),
        ("coordination.k8s.io", "leases") if name != node => Err("can only access node lease with the same name as the requesting node".into()),
        _ => Ok(()),
    }
}

/// What the write hook does not see: deleting or evicting a pod, and a
/// TokenRequest (`body`), judged by the pods the node runs.
pub fn admit_request(
    node: &str,
    a: &Attributes,
    pods: &WatchCache,
    body: Option<&Value>,
) -> Result<(), String> {
    let pod = |ns: &str, name: &str| {
        pods.get(&format!("{}{ns}/{name}", pods.prefix))
            .map(|e| e.object())
    };
    match (
        a.group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
        a.verb.as_str(),
    ) {
        ("", "pods", "", "delete") => match pod(&a.namespace, &a.name) {
            Some(p) if node_of(&p) != node => Err(format!(
                "node {node:?} can only delete pods with spec.nodeName set to itself"
            )),
            _ => Ok(()),
        },
        ("", "pods", "eviction", "create") => match pod(&a.namespace, &a.name) {
            Some(p) if node_of(&p) != node => Err(format!(
                "node {node:?} can only evict pods with spec.nodeName set to itself"
            )),
            _ => Ok(()),
        },
        ("", "serviceaccounts", "token", "create") => {
            let bound = body.and_then(|b| b.pointer("/spec/boundObjectRef"));
            let kind = bound.and_then(|r| r["kind"].as_str()).unwrap_or("");
            if kind != "Pod" {
                return Err("node requested token not bound to a pod".into());
            }
            let name = bound.and_then(|r| r["name"].as_str()).unwrap_or("");
            let uid = bound.and_then(|r| r["uid"].as_str()).unwrap_or("");
            match pod(&a.namespace, name) {
                Some(p)
                    if node_of(&p) == node
                        && (uid.is_empty() || crate::meta::uid(&p) == Some(uid))
                        && p.pointer("/spec/serviceAccountName")
                            .and_then(Value::as_str)
                            == Some(a.name.as_str()) =>
                {
                    Ok(())
                }
                Some(p) if node_of(&p) != node => {
                    Err("node requested token bound to a pod scheduled on a different node".into())
                }
                Some(_) => {
                    Err("node requested token bound to a different pod or service account".into())
                }
                None => Err("node requested token bound to a pod that does not exist".into()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_machinery::catalog;

    #[test]
    fn a_node_writes_itself_and_its_pods_status_only() {
        let nodes = catalog::lookup("", "v1", "nodes").unwrap();
        let pods = catalog::lookup("", "v1", "pods").unwrap();
        let n1 = json!({"metadata": {"name": "n1"}});
        assert!(admit_write("n1", nodes, Part::Main, &n1, None).is_ok());
        let n2 = json!({"metadata": {"name": "n2"}});
        assert_eq!(
            admit_write("n1", nodes, Part::Status, &n2, Some(&n2)).unwrap_err(),
            "node \"n1\" is not allowed to modify node \"n2\""
        );
        let tainted = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
        assert!(admit_write("n1", nodes, Part::Main, &n1, Some(&tainted)).is_err());
        let mine = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let theirs = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n2"}});
        assert!(admit_write("n1", pods, Part::Status, &mine, Some(&mine)).is_ok());
        assert!(admit_write("n1", pods, Part::Status, &theirs, Some(&theirs)).is_err());
        assert!(admit_write("n1", pods, Part::Main, &mine, Some(&mine)).is_err());
        assert!(admit_write("n1", pods, Part::Main, &mine, None).is_err());
    }
}
