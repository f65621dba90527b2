//! Writes the bootstrap policy at start and keeps aggregated ClusterRoles
//! current, as kube-apiserver's RBAC post-start hook and the clusterrole
//! aggregation controller do:
//! - a missing policy object is created;
//! - one whose `rbac.authorization.kubernetes.io/autoupdate` annotation is
//!   not "false" gets back the rules, subjects and labels it lost (extra
//!   ones an operator added stay);
//! - a ClusterRole with an aggregationRule holds the rules of every
//!   ClusterRole its selectors match (admin, edit and view are such).

use super::policy::{self, Binding, Role, Subject};
use super::rbac_kind;
use super::rules::PolicyRule;
use crate::meta;
use crate::registry::{Part, Registry, WriteOptions};
use futures::FutureExt;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;
use skiff_machinery::labels::Selector;
use std::sync::Arc;

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

fn options() -> WriteOptions {
    WriteOptions {
        field_manager: Some("skiff-apiserver".into()),
        ..Default::default()
    }
}

fn metadata(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> Value {
    let mut all = serde_json::Map::new();
    all.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for (k, v) in labels {
        all.insert(k.to_string(), json!(v));
    }
    let mut m = json!({"name": name, "labels": all, "annotations": {AUTOUPDATE: "true"}});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn role_object(kind: &str, namespace: Option<&str>, role: &Role) -> Value {
    let rules: Vec<Value> = role
        .rules
        .iter()
        .map(|r| PolicyRule::from_policy(r).to_json())
        .collect();
    let mut o = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": metadata(role.name, namespace, role.labels),
        "rules": rules,
    });
    if !role.aggregate.is_empty() {
        let selectors: Vec<Value> = role
            .aggregate
            .iter()
            .map(|labels| {
                let m: serde_json::Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                json!({"matchLabels": m})
            })
            .collect();
        o["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
    }
    o
}

fn binding_object(kind: &str, namespace: Option<&str>, b: &Binding) -> Value {
    let subjects: Vec<Value> = b
        .subjects
        .iter()
        .map(|s| match s {
            Subject::User(name) => {
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
            }
            Subject::Group(name) => {
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
            }
            Subject::ServiceAccount(ns, name) => {
                json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
            }
        })
        .collect();
    let role_kind = if namespace.is_some() {
        "Role"
    } else {
        "ClusterRole"
    };
    let mut o = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": metadata(b.name, namespace, &[]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": b.role},
    });
    if !subjects.is_empty() {
        o["subjects"] = json!(subjects);
    }
    o
}

/// What a policy object lacks that the bootstrap one has: labels,
/// annotations, rules (or subjects) and aggregation selectors, added.
fn reconciled(current: &Value, want: &Value) -> Option<Value> {
    let autoupdate = current
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE));
    if autoupdate.and_then(Value::as_str) == Some("false") {
        return None;
    }
    let mut next = current.clone();
    for field in ["labels", "annotations"] {
        if let Some(wanted) = want["metadata"][field].as_object() {
            let have = next["metadata"]
                .as_object_mut()
                .expect("an object's metadata")
                .entry(field)
                .or_insert_with(|| json!({}));
            if let Some(have) = have.as_object_mut() {
                for (k, v) in wanted {
                    have.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    for list in [
        "/rules",
        "/subjects",
        "/aggregationRule/clusterRoleSelectors",
    ] {
        let Some(wanted) = want.pointer(list).and_then(Value::as_array) else {
            continue;
        };
        let mut have = next
            .pointer(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in wanted {
            if !have.contains(item) {
                have.push(item.clone());
            }
        }
        let (parent, field) = list.rsplit_once('/').expect("a pointer");
        let parent = if parent.is_empty() {
            &mut next
        } else {
            let p = next.pointer_mut(parent);
            match p {
                Some(p) => p,
                None => {
                    next["aggregationRule"] = json!({});
                    next.pointer_mut(parent).expect("just made")
                }
            }
        };
        parent[field] = json!(have);
    }
    (next != *current).then_some(next)
}

/// Creates or reconciles one policy object.
async fn ensure(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    want: Value,
) -> anyhow::Result<()> {
    let name = meta::name(&want).to_string();
    let cached = reg.cache(res).get(&res.key(ns, &name)).map(|e| e.object());
    if cached.is_some_and(|c| reconciled(&c, &want).is_none()) {
        return Ok(());
    }
    match reg.get(res, ns, &name).await {
        Ok(current) => {
            if reconciled(&current, &want).is_none() {
                return Ok(());
            }
            reg.update_with(res, ns, &name, Part::Main, &options(), "Update", |cur| {
                Ok(reconciled(cur, &want).unwrap_or_else(|| cur.clone()))
            })
            .await?;
        }
        Err(e) if e.code == 404 => match reg.create(res, ns, want, &options()).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating {} {name}: {e}", res.kind),
        },
        Err(e) => anyhow::bail!("reading {} {name}: {e}", res.kind),
    }
    Ok(())
}

/// Writes the bootstrap policy (all at once, so the store commits them
/// together) and aggregates the ClusterRoles.
pub async fn write_policy(reg: &Registry) -> anyhow::Result<()> {
    let mut writes = Vec::new();
    for role in policy::CLUSTER_ROLES {
        let o = role_object("ClusterRole", None, role);
        writes.push(ensure(reg, rbac_kind("clusterroles"), None, o).boxed());
    }
    for b in policy::CLUSTER_ROLE_BINDINGS {
        let o = binding_object("ClusterRoleBinding", None, b);
        writes.push(ensure(reg, rbac_kind("clusterrolebindings"), None, o).boxed());
    }
    for (ns, role) in policy::ROLES {
        let o = role_object("Role", Some(ns), role);
        writes.push(ensure(reg, rbac_kind("roles"), Some(ns), o).boxed());
    }
    for (ns, b) in policy::ROLE_BINDINGS {
        let o = binding_object("RoleBinding", Some(ns), b);
        writes.push(ensure(reg, rbac_kind("rolebindings"), Some(ns), o).boxed());
    }
    futures::future::try_join_all(writes).await?;
    aggregate(reg).await;
    Ok(())
}

/// Keeps aggregated ClusterRoles current as ClusterRoles change. The
/// cache wakes its watchers on every write anywhere (its revision moves);
/// only a published ClusterRole event is a reason to aggregate again.
pub fn keep_aggregated(reg: Arc<Registry>) {
    tokio::spawn(async move {
        let cache = reg.cache(rbac_kind("clusterroles"));
        let Ok(subscription) = cache.subscribe(0, &cache.prefix) else {
            return;
        };
        let mut live = subscription.live;
        loop {
            live.changed().await;
            live.mark_seen();
            let mut changed = false;
            while live.next().is_some() {
                changed = true;
            }
            if changed {
                aggregate(&reg).await;
            }
        }
    });
}

/// The union of the rules of the roles a role's selectors match, in the
/// order of their names, each rule once.
fn aggregated_rules(role: &Value, roles: &[Value]) -> Option<Vec<Value>> {
    let selectors: Vec<Selector> = role
        .pointer("/aggregationRule/clusterRoleSelectors")?
        .as_array()?
        .iter()
        .filter_map(|s| Selector::from_label_selector(s).ok())
        .collect();
    let mut rules: Vec<Value> = Vec::new();
    for other in roles {
        if meta::name(other) == meta::name(role) {
            continue;
        }
        if !selectors.iter().any(|s| s.matches_object(other)) {
            continue;
        }
        for rule in other["rules"].as_array().into_iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

/// One pass of the aggregation controller, over the ClusterRoles as
/// they are in storage (the cache may not hold the ones just written).
async fn aggregate(reg: &Registry) {
    let res = rbac_kind("clusterroles");
    let roles = match reg.list(res, None, &Default::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|e| e.object())
            .collect::<Vec<Value>>(),
        Err(e) => {
            tracing::warn!(error = %e, "listing ClusterRoles to aggregate");
            return;
        }
    };
    for role in &roles {
        let Some(rules) = aggregated_rules(role, &roles) else {
            continue;
        };
        if role["rules"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            == rules.as_slice()
        {
            continue;
        }
        let written = reg
            .update_with(
                res,
                None,
                meta::name(role),
                Part::Main,
                &options(),
                "Update",
                |cur| {
                    let mut next = cur.clone();
                    next["rules"] = json!(rules);
                    Ok(next)
                },
            )
            .await;
        if let Err(e) = written {
            tracing::warn!(role = meta::name(role), error = %e, "aggregating a ClusterRole");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_unions_matching_roles_rules() {
        let admin = json!({"metadata": {"name": "admin"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}});
        let a = json!({"metadata": {"name": "a", "labels": {"agg": "true"}}, "rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]});
        let b = json!({"metadata": {"name": "b", "labels": {"agg": "true"}}, "rules": [{"verbs": ["list"]}, {"verbs": ["watch"]}]});
        let c = json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["delete"]}]});
        let rules = aggregated_rules(&admin, &[admin.clone(), a, b, c]).unwrap();
        assert_eq!(
            rules,
            vec![
                json!({"verbs": ["get"]}),
                json!({"verbs": ["list"]}),
                json!({"verbs": ["watch"]})
            ]
        );
        assert!(aggregated_rules(&json!({"metadata": {"name": "x"}}), &[]).is_none());
    }

    #[test]
    fn reconciling_restores_what_was_lost_and_keeps_additions() {
        let want = json!({"metadata": {"name": "view", "labels": {"l": "1"}, "annotations": {AUTOUPDATE: "true"}}, "rules": [{"verbs": ["get"]}]});
        let current = json!({"metadata": {"name": "view", "labels": {"mine": "x"}}, "rules": [{"verbs": ["delete"]}]});
        let next = reconciled(&current, &want).unwrap();
        assert_eq!(
            next["rules"],
            json!([{"verbs": ["delete"]}, {"verbs": ["get"]}])
        );
        assert_eq!(next["metadata"]["labels"], json!({"mine": "x", "l": "1"}));
        assert!(reconciled(&next, &want).is_none());
        let mut pinned = current.clone();
        pinned["metadata"]["annotations"] = json!({AUTOUPDATE: "false"});
        assert!(reconciled(&pinned, &want).is_none());
    }
}
