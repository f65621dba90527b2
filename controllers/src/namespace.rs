//! The namespace controller: a namespace being deleted has all its content
//! deleted, reports what remains in its conditions, and once empty gives up
//! its `kubernetes` finalizer, so the API server removes it.

use crate::metrics::Controller;
use crate::resources;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The name of a namespace objects may still be made in: neither being
/// deleted nor Terminating.
pub fn active_name(ns: &Namespace) -> Option<&str> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    ns.metadata.name.as_deref().filter(|_| !terminating)
}

pub async fn run(client: Client) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    Controller::new("namespace", nss, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Namespace>, err: &Error, _: Arc<Client>) -> Action {
    tracing::warn!(error = %err, "namespace reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let mut remaining: Vec<(String, usize)> = Vec::new();
    let mut finalizers_left: Vec<String> = Vec::new();
    let custom = resources::custom(&client).await?;
    for res in resources::stored().chain(custom).filter(|r| r.namespaced) {
        let api = resources::api_for(&client, res, Some(&name));
        let list = api.list(&ListParams::default()).await?;
        if list.items.is_empty() {
            continue;
        }
        let undeleted = list
            .items
            .iter()
            .any(|o| o.metadata.deletion_timestamp.is_none());
        if undeleted {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await?;
        }
        let left = api.list(&ListParams::default()).await?;
        if !left.items.is_empty() {
            let qualified = if res.group.is_empty() {
                res.plural.to_string()
            } else {
                format!("{}.{}", res.plural, res.group)
            };
            remaining.push((qualified, left.items.len()));
            for o in &left.items {
                for f in o.metadata.finalizers.iter().flatten() {
                    if !finalizers_left.contains(f) {
                        finalizers_left.push(f.clone());
                    }
                }
            }
        }
    }
    let nss: Api<Namespace> = Api::all((*client).clone());
    if remaining.is_empty() {
        // Everything is gone: drop our finalizer through the finalize subresource.
        let mut done = (*ns).clone();
        if let Some(spec) = done.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        nss.replace_subresource("finalize", &name, &PostParams::default(), &done)
            .await?;
        tracing::info!(namespace = %name, "namespace content deleted, finalized");
        return Ok(Action::await_change());
    }
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let content: Vec<String> = remaining
        .iter()
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    let mut conditions = vec![json!({
        "type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
        "message": format!("Some resources are remaining: {}", content.join(", ")), "lastTransitionTime": now,
    })];
    if !finalizers_left.is_empty() {
        conditions.push(json!({
            "type": "NamespaceFinalizersRemaining", "status": "True", "reason": "SomeFinalizersRemain",
            "message": format!("Some content in the namespace has finalizers remaining: {}", finalizers_left.join(", ")), "lastTransitionTime": now,
        }));
    }
    let status = json!({"status": {"phase": "Terminating", "conditions": conditions}});
    nss.patch_status(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(status),
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(1)))
}
