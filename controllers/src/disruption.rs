//! The disruption controller: each PodDisruptionBudget's status — how many
//! of the pods it selects are healthy, how many must stay healthy
//! (minAvailable / maxUnavailable, numbers or percentages of the expected
//! count), and so how many disruptions (evictions) are allowed now.
//! Expected pods are the pods the budget selects (upstream asks their
//! controllers' scale; with plain pods the two agree).

use crate::metrics::Controller;
use futures::StreamExt;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_machinery::client::CachedPod;
use skiff_machinery::labels::Selector;
use std::sync::Arc;
use std::time::Duration;

struct Ctx {
    client: Client,
    pods: Store<CachedPod>,
}

pub async fn run(client: Client) -> anyhow::Result<()> {
    let (pods, pod_events) = crate::resources::reflected::<CachedPod>(&client);
    let controller = Controller::new(
        "disruption",
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods,
    });
    controller
        .watches_shared_stream(pod_events, move |pod| {
            let ns = pod.namespace().unwrap_or_default();
            budgets
                .state()
                .into_iter()
                .filter(|b| {
                    b.namespace().as_deref() == Some(ns.as_str())
                        && selector(b).is_some_and(|s| s.matches(Some(&labels_of(&pod))))
                })
                .map(|b| ObjectRef::from_obj(&*b))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<PodDisruptionBudget>, err: &kube::Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "disruption reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

fn selector(b: &PodDisruptionBudget) -> Option<Selector> {
    let sel = serde_json::to_value(b.spec.as_ref()?.selector.as_ref()?).ok()?;
    Selector::from_label_selector(&sel)
        .ok()
        .filter(|s| !s.is_empty())
}

fn labels_of(pod: &CachedPod) -> serde_json::Map<String, serde_json::Value> {
    pod.labels()
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect()
}

/// An int-or-percent of `total`, percentages rounded up (as upstream).
fn scaled(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: i32 = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * total + 99) / 100
        }
    }
}

/// (expected, healthy, desired healthy, disruptions allowed) for a budget over these pods.
pub fn compute(b: &PodDisruptionBudget, pods: &[Arc<CachedPod>]) -> (i32, i32, i32, i32) {
    let disrupted = b
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let live: Vec<&Arc<CachedPod>> = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
        .collect();
    let expected = live.len() as i32;
    let healthy = live
        .iter()
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count() as i32;
    let spec = b.spec.as_ref();
    let desired = match (
        spec.and_then(|s| s.min_available.as_ref()),
        spec.and_then(|s| s.max_unavailable.as_ref()),
    ) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => (expected - scaled(max, expected)).max(0),
        (None, None) => expected,
    };
    (expected, healthy, desired, (healthy - desired).max(0))
}

async fn reconcile(b: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    // Until the first pod list is in, an empty store would mean "no pods".
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = b.namespace().unwrap_or_default();
    let sel = selector(&b);
    let pods: Vec<Arc<CachedPod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && sel.as_ref().is_some_and(|s| s.matches(Some(&labels_of(p))))
        })
        .collect();
    let (expected, healthy, desired, allowed) = compute(&b, &pods);
    // Evictions older than two minutes whose pods are still there did not happen.
    let now = k8s_openapi::jiff::Timestamp::now();
    let disrupted: serde_json::Map<String, serde_json::Value> = b
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, t)| {
            pods.iter()
                .any(|p| p.name_any() == *name && p.metadata.deletion_timestamp.is_none())
                && now.duration_since(t.0).as_secs() < 120
        })
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let ok = allowed > 0;
    let t = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let status = json!({"status": {
        "observedGeneration": b.metadata.generation,
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "disruptedPods": disrupted,
        "conditions": [{
            "type": "DisruptionAllowed", "status": if ok { "True" } else { "False" },
            "reason": if ok { "SufficientPods" } else { "InsufficientPods" }, "message": "",
            "observedGeneration": b.metadata.generation, "lastTransitionTime": t,
        }],
    }});
    let old = b.status.as_ref().map(|s| {
        (
            s.expected_pods,
            s.current_healthy,
            s.desired_healthy,
            s.disruptions_allowed,
            s.observed_generation,
        )
    });
    let unchanged = old == Some((expected, healthy, desired, allowed, b.metadata.generation))
        && b.status
            .as_ref()
            .and_then(|s| s.disrupted_pods.as_ref())
            .map_or(0, |d| d.len())
            == disrupted.len();
    if !unchanged {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &b.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
