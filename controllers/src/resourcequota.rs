//! The resource quota controller: each ResourceQuota's status says what
//! it limits (`hard`, from its spec) and what its namespace uses of each
//! (`used`), recounted from the objects that exist every few seconds (as
//! upstream's resync, more often), so deleted objects give back what the
//! API server's quota admission charged for them.

use crate::metrics::Controller;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use skiff_machinery::catalog;
use skiff_machinery::quota::{self, Usage};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How often each quota is recounted.
const RECOUNT: Duration = Duration::from_secs(5);

pub async fn run(client: Client) -> anyhow::Result<()> {
    let quotas: Api<ResourceQuota> = Api::all(client.clone());
    Controller::new("resourcequota", quotas, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<ResourceQuota>, err: &kube::Error, _: Arc<Client>) -> Action {
    tracing::warn!(error = %err, "resource quota recount failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(rq: Arc<ResourceQuota>, client: Arc<Client>) -> Result<Action, kube::Error> {
    let Some(ns) = rq.namespace() else {
        return Ok(Action::await_change());
    };
    if rq.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let q = serde_json::to_value(&*rq).unwrap_or_default();
    let hard = q
        .pointer("/spec/hard")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let limited = quota::amounts(Some(&hard));
    // Each counted resource listed once, whatever number of names need it.
    let resources: BTreeSet<(String, String)> = limited
        .keys()
        .filter_map(|name| quota::counted_resource(name))
        .collect();
    let mut total = Usage::new();
    // Custom resources are counted as `count/<plural>.<group>` too.
    let builtin = |group: &str, plural: &str| {
        catalog::RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.stored)
    };
    let custom = if resources.iter().all(|(g, p)| builtin(g, p).is_some()) {
        Vec::new()
    } else {
        crate::resources::custom(&client).await?
    };
    for (group, plural) in &resources {
        let Some(res) = builtin(group, plural).or_else(|| {
            custom
                .iter()
                .copied()
                .find(|r| r.group == group && r.plural == plural)
        }) else {
            continue;
        };
        let api = crate::resources::api_for(&client, res, Some(&ns));
        for obj in api.list(&ListParams::default()).await?.items {
            let v = serde_json::to_value(&obj).unwrap_or_default();
            if quota::scopes_cover(&q, group, plural, &v) {
                quota::add(&mut total, &quota::usage(group, plural, &v));
            }
        }
    }
    let used: serde_json::Map<String, Value> = limited
        .iter()
        .map(|(k, h)| {
            let amount = total.get(k).copied().unwrap_or(quota::Amount {
                quantity: skiff_machinery::quantity::Quantity { millis: 0 },
                binary: h.binary,
            });
            (k.clone(), json!(amount.text()))
        })
        .collect();
    let status = json!({"hard": hard, "used": used});
    let current = q.get("status").cloned().unwrap_or(Value::Null);
    if same_status(&current, &status) {
        return Ok(Action::requeue(RECOUNT));
    }
    let mut next = (*rq).clone();
    next.status = serde_json::from_value(status).ok();
    let api: Api<ResourceQuota> = Api::namespaced((*client).clone(), &ns);
    match api
        .replace_status(&rq.name_any(), &PostParams::default(), &next)
        .await
    {
        Ok(_) => {}
        // A charge or an edit got there first: count again shortly.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(e) => return Err(e),
    }
    Ok(Action::requeue(RECOUNT))
}

/// Whether two statuses say the same amounts (however each is written).
fn same_status(a: &Value, b: &Value) -> bool {
    ["hard", "used"].iter().all(|k| {
        let (x, y) = (quota::amounts(a.get(*k)), quota::amounts(b.get(*k)));
        x.len() == y.len()
            && x.iter()
                .all(|(name, v)| y.get(name).is_some_and(|w| w.quantity == v.quantity))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_compare_by_value() {
        let a = json!({"hard": {"memory": "1Gi"}, "used": {"memory": "1024Mi"}});
        let b = json!({"hard": {"memory": "1Gi"}, "used": {"memory": "1Gi"}});
        assert!(same_status(&a, &b));
        let c = json!({"hard": {"memory": "1Gi"}, "used": {"memory": "0"}});
        assert!(!same_status(&a, &c));
        assert!(!same_status(&Value::Null, &b));
    }
}
