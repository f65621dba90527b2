//! The built-in service load balancer (k3s's ServiceLB, without its pods):
//! a LoadBalancer Service with no loadBalancerClass gets the addresses of
//! the cluster's Ready nodes as `status.loadBalancer.ingress` (a node's
//! ExternalIP when it has one, else its InternalIP), and every node's proxy
//! answers on them. Services that stop being LoadBalancers lose the status.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_machinery::client::informers;

/// Changes arriving within this long of each other are handled together.
const SETTLE: Duration = Duration::from_millis(100);

pub async fn run(client: Client) -> anyhow::Result<()> {
    let queue = crate::metrics::queue("service-lb-controller");
    let (services, svc_changes) = informers::subscribe::<Service>(&client);
    let (nodes, node_changes) = informers::subscribe::<Node>(&client);
    services.wait_until_ready().await?;
    nodes.wait_until_ready().await?;
    let mut changes = futures::stream::select(
        svc_changes.map(|_| ()).boxed(),
        node_changes.map(|_| ()).boxed(),
    );
    // Every change looks at every LoadBalancer Service: they are few, and a
    // node change concerns them all.
    while changes.next().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        while futures::FutureExt::now_or_never(changes.next()).is_some() {}
        if let Err(e) = queue.pass(reconcile_all(&client, &services, &nodes)).await {
            tracing::warn!(error = %e, "service load balancer pass failed");
        }
    }
    Ok(())
}

/// The ingress addresses every LoadBalancer Service gets.
pub fn node_addresses(nodes: &[std::sync::Arc<Node>]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for n in nodes {
        let status = n.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready || n.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let addrs = status.and_then(|s| s.addresses.as_ref());
        let pick = |ty: &str| {
            addrs.and_then(|a| a.iter().find(|a| a.type_ == ty).map(|a| a.address.clone()))
        };
        if let Some(ip) = pick("ExternalIP").or_else(|| pick("InternalIP")) {
            out.insert(ip);
        }
    }
    out.into_iter().collect()
}

fn ours(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

fn current_ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

async fn reconcile_all(
    client: &Client,
    services: &Store<Service>,
    nodes: &Store<Node>,
) -> anyhow::Result<()> {
    let addresses = node_addresses(&nodes.state());
    for svc in services.state() {
        let current = current_ingress(&svc);
        let desired: &[String] = if ours(&svc) {
            &addresses
        } else if current.is_empty()
            || svc
                .spec
                .as_ref()
                .is_some_and(|s| s.load_balancer_class.is_some())
        {
            // Not ours to touch.
            continue;
        } else {
            &[]
        };
        if current == desired {
            continue;
        }
        let ingress: Vec<_> = desired
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let api: Api<Service> =
            Api::namespaced(client.clone(), &svc.namespace().unwrap_or_default());
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        match api
            .patch_status(
                &svc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(service = %svc.name_any(), ?desired, "load balancer ingress set")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn node(name: &str, ready: &str, addrs: &[(&str, &str)]) -> Arc<Node> {
        let addresses: Vec<_> = addrs
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": ready}], "addresses": addresses}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn ready_nodes_external_address_first() {
        let nodes = [
            node(
                "a",
                "True",
                &[("InternalIP", "172.29.7.3"), ("Hostname", "a")],
            ),
            node(
                "b",
                "True",
                &[("InternalIP", "172.29.7.2"), ("ExternalIP", "198.51.100.4")],
            ),
            node("c", "False", &[("InternalIP", "172.29.7.9")]),
        ];
        assert_eq!(node_addresses(&nodes), ["172.29.7.3", "198.51.100.4"]);
    }
}
