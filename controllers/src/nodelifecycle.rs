//! Node lifecycle: a node whose Lease (or Ready heartbeat) is older than the
//! grace period is marked Unknown; NotReady and Unknown nodes get the
//! `node.kubernetes.io/not-ready` / `unreachable` NoExecute and NoSchedule
//! taints (removed when they recover; cordoned nodes get `unschedulable`);
//! pods on a NoExecute-tainted node are evicted when they do not tolerate
//! the taint, or once their tolerationSeconds run out, as upstream's taint
//! manager does.

use crate::resources::cached;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// How often nodes are looked at (upstream's node-monitor-period is 5 s).
const MONITOR_PERIOD: Duration = Duration::from_secs(2);

pub async fn run(client: Client, grace: Duration) -> anyhow::Result<()> {
    let queue = crate::metrics::queue("nodelifecycle");
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    loop {
        tick.tick().await;
        if let Err(e) = queue.pass(monitor(&client, grace)).await {
            tracing::warn!(error = %e, "node lifecycle pass failed");
        }
    }
}

async fn monitor(client: &Client, grace: Duration) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    // The shared caches, not lists: a pass runs every 2 s over every node.
    let renewals: HashMap<String, Timestamp> = cached::<Lease>(client)
        .await?
        .state()
        .into_iter()
        .filter(|l| l.metadata.namespace.as_deref() == Some("kube-node-lease"))
        .filter_map(|l| {
            let t = l.spec.as_ref()?.renew_time.as_ref()?.0;
            Some((l.name_any(), t))
        })
        .collect();
    let now = Timestamp::now();
    for node in cached::<Node>(client).await?.state() {
        let name = node.name_any();
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        let heartbeat = ready
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0);
        let probe = [renewals.get(&name).copied(), heartbeat]
            .into_iter()
            .flatten()
            .max();
        let mut ready_status = ready
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".into());
        let stale = probe.is_none_or(|p| now.duration_since(p).unsigned_abs() > grace);
        if stale && ready_status != "Unknown" && probe.is_some() {
            mark_unknown(&nodes, &name, &conditions).await?;
            tracing::info!(node = %name, "node stopped reporting: Ready=Unknown");
            ready_status = "Unknown".into();
        }
        let unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        let wanted: Vec<(&str, &str)> = match ready_status.as_str() {
            "True" => vec![],
            "False" => vec![(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")],
            _ => vec![(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")],
        };
        let taints = sync_taints(&nodes, &node, &wanted, unschedulable).await?;
        let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
        if !no_execute.is_empty() {
            evict(client, &name, &no_execute, now).await?;
        }
    }
    Ok(())
}

async fn mark_unknown(
    nodes: &Api<Node>,
    name: &str,
    conditions: &[k8s_openapi::api::core::v1::NodeCondition],
) -> Result<(), kube::Error> {
    let t = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let updated: Vec<serde_json::Value> = conditions
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["status"] = json!("Unknown");
            v["reason"] = json!("NodeStatusUnknown");
            v["message"] = json!("Kubelet stopped posting node status.");
            v["lastTransitionTime"] = json!(t);
            v
        })
        .collect();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": updated}})),
        )
        .await?;
    Ok(())
}

/// Makes the lifecycle taints exactly `wanted` (+ unschedulable when cordoned),
/// leaving other taints alone; returns the node's taints afterwards.
async fn sync_taints(
    nodes: &Api<Node>,
    node: &Node,
    wanted: &[(&str, &str)],
    cordoned: bool,
) -> Result<Vec<Taint>, kube::Error> {
    let ours = [NOT_READY, UNREACHABLE, UNSCHEDULABLE];
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !ours.contains(&t.key.as_str()))
        .cloned()
        .collect();
    let mut want: Vec<(&str, &str)> = wanted.to_vec();
    if cordoned {
        want.push((UNSCHEDULABLE, "NoSchedule"));
    }
    for (key, effect) in want {
        // Keep the existing taint (and its timeAdded) when it is already there.
        let kept = current
            .iter()
            .find(|t| t.key == key && t.effect == effect)
            .cloned();
        next.push(kept.unwrap_or_else(|| {
            Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: (effect == "NoExecute").then(|| {
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())
                }),
            }
        }));
    }
    let same = next.len() == current.len()
        && next.iter().all(|t| {
            current
                .iter()
                .any(|c| c.key == t.key && c.effect == t.effect)
        });
    if !same {
        let rv = node.resource_version();
        let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": next}});
        match nodes
            .patch(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(next)
}

/// How long a toleration lets the pod stay: `None` = forever, `Some(0)` = not at all.
fn tolerated_for(tolerations: &[Toleration], taint: &Taint) -> Option<i64> {
    let matching = tolerations.iter().filter(|t| {
        let key_ok = match t.operator.as_deref().unwrap_or("Equal") {
            "Exists" => t
                .key
                .as_deref()
                .is_none_or(|k| k.is_empty() || k == taint.key),
            _ => {
                t.key.as_deref() == Some(taint.key.as_str())
                    && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
        };
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        key_ok && effect_ok
    });
    let mut best: Option<Option<i64>> = None;
    for t in matching {
        let secs = t.toleration_seconds;
        best = Some(match (best, secs) {
            (None, s) => s,
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
        });
    }
    best.unwrap_or(Some(0))
}

async fn evict(
    client: &Client,
    node: &str,
    taints: &[&Taint],
    now: Timestamp,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for pod in on_node.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        // The pod must go once any NoExecute taint's allowance has run out.
        let due = taints.iter().any(|t| match tolerated_for(&tolerations, t) {
            None => false,
            Some(secs) => {
                let added = t.time_added.as_ref().map(|x| x.0).unwrap_or(now);
                now.duration_since(added).as_secs() >= secs
            }
        });
        if !due {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &dp).await {
            Ok(_) => {
                tracing::info!(pod = %pod.name_any(), namespace = %ns, %node, "evicted from a NoExecute-tainted node")
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: Option<&str>, op: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: key.map(String::from),
            operator: Some(op.into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn toleration_allowance() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: None,
        };
        assert_eq!(tolerated_for(&[], &taint), Some(0));
        assert_eq!(
            tolerated_for(
                &[toleration(Some(UNREACHABLE), "Exists", Some(300))],
                &taint
            ),
            Some(300)
        );
        assert_eq!(
            tolerated_for(&[toleration(None, "Exists", None)], &taint),
            None
        );
        assert_eq!(
            tolerated_for(&[toleration(Some(NOT_READY), "Exists", Some(5))], &taint),
            Some(0)
        );
    }
}
