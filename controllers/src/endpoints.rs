//! Endpoints and EndpointSlices: for every Service with a selector, the
//! addresses of the pods it selects — ready or not, terminating or serving —
//! with named target ports resolved per pod, as upstream's endpoints and
//! endpointslice controllers write them. Services without a selector keep
//! whatever endpoints their users manage.

use crate::metrics::Controller;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use skiff_machinery::client::CachedPod;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice (upstream's default --max-endpoints-per-slice).
pub const MAX_PER_SLICE: usize = 100;

struct Ctx {
    client: Client,
    pods: Store<CachedPod>,
    nodes: Store<Node>,
}

pub async fn run(client: Client) -> anyhow::Result<()> {
    let (pods, pod_events) = crate::resources::reflected::<CachedPod>(&client);
    let nodes = crate::resources::cached::<Node>(&client).await?;

    let controller = Controller::new(
        "endpoint",
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods,
        nodes,
    });
    controller
        // A pod change concerns the services of its namespace that select it.
        .watches_shared_stream(pod_events, move |pod| {
            let ns = pod.namespace().unwrap_or_default();
            services
                .state()
                .into_iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()) && selects(s, &pod))
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Service>, err: &Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "endpoints reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

fn selects(svc: &Service, pod: &CachedPod) -> bool {
    let Some(sel) = selector(svc) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One pod as an endpoint.
#[derive(Debug, Clone)]
struct Member {
    pod: String,
    uid: String,
    ip: String,
    node: Option<String>,
    zone: Option<String>,
    /// The pod's DNS name under the service (`spec.hostname` of a pod whose
    /// `spec.subdomain` is the service), as StatefulSet pods have.
    hostname: Option<String>,
    ready: bool,
    serving: bool,
    terminating: bool,
    /// The service's ports with the target resolved for this pod: (name, port, protocol).
    ports: Vec<(String, i32, String)>,
}

/// A service port's target on one pod: a number, or a named container port.
fn resolve_port(target: Option<&Value>, port: i32, pod: &CachedPod, protocol: &str) -> Option<i32> {
    match target {
        None => Some(port),
        Some(Value::Number(n)) => n.as_i64().map(|n| n as i32),
        Some(Value::String(name)) => pod.spec.as_ref()?.containers.iter().find_map(|c| {
            c.ports
                .iter()
                .flatten()
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }),
        _ => None,
    }
}

fn members(svc: &Service, ctx: &Ctx) -> Vec<Member> {
    let ns = svc.namespace().unwrap_or_default();
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let svc_ports: Vec<Value> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap_or_default())
        .collect();
    let mut out: Vec<Member> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selects(svc, p))
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let pod_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let terminating = p.metadata.deletion_timestamp.is_some();
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let zone = node.as_ref().and_then(|n| {
                ctx.nodes
                    .state()
                    .into_iter()
                    .find(|x| x.name_any() == *n)?
                    .labels()
                    .get("topology.kubernetes.io/zone")
                    .cloned()
            });
            let ports = svc_ports
                .iter()
                .filter_map(|sp| {
                    let protocol = sp
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP")
                        .to_string();
                    let port = sp.get("port").and_then(Value::as_i64)? as i32;
                    let target = resolve_port(sp.get("targetPort"), port, &p, &protocol)?;
                    Some((
                        sp.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        target,
                        protocol,
                    ))
                })
                .collect();
            let spec = p.spec.as_ref();
            let hostname = spec
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty())
                .filter(|_| {
                    spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
                });
            Some(Member {
                pod: p.name_any(),
                uid: p.uid().unwrap_or_default(),
                ip,
                node,
                zone,
                hostname,
                ready: (pod_ready || publish_not_ready) && !terminating,
                serving: pod_ready || publish_not_ready,
                terminating,
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

fn target_ref(ns: &str, m: &Member) -> Value {
    json!({"kind": "Pod", "namespace": ns, "name": m.pod, "uid": m.uid})
}

/// A pod's resolved ports, and the ready and not-ready addresses sharing them.
type Ports = Vec<(String, i32, String)>;
type Addresses = (Vec<Value>, Vec<Value>);

/// Endpoints subsets: members grouped by their resolved ports; terminating
/// pods are left out unless the service publishes not-ready addresses.
fn subsets(ns: &str, members: &[Member], publish_not_ready: bool) -> Vec<Value> {
    let mut groups: BTreeMap<Ports, Addresses> = BTreeMap::new();
    for m in members
        .iter()
        .filter(|m| !m.terminating || publish_not_ready)
    {
        if m.ports.is_empty() {
            continue;
        }
        let mut addr = json!({"ip": m.ip, "targetRef": target_ref(ns, m)});
        if let Some(n) = &m.node {
            addr["nodeName"] = json!(n);
        }
        if let Some(h) = &m.hostname {
            addr["hostname"] = json!(h);
        }
        let entry = groups.entry(m.ports.clone()).or_default();
        if m.ready {
            entry.0.push(addr)
        } else {
            entry.1.push(addr)
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let ports: Vec<Value> = ports
                .iter()
                .map(|(name, port, proto)| {
                    let mut p = json!({"port": port, "protocol": proto});
                    if !name.is_empty() {
                        p["name"] = json!(name);
                    }
                    p
                })
                .collect();
            let mut s = json!({"ports": ports});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    // Until the first pod list is in, an empty store would mean "no pods".
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let members = members(&svc, &ctx);
    write_endpoints(
        &ctx.client,
        &svc,
        &ns,
        &name,
        subsets(&ns, &members, publish_not_ready),
    )
    .await?;
    write_slices(&ctx.client, &svc, &ns, &name, &members).await?;
    Ok(Action::await_change())
}

async fn write_endpoints(
    client: &Client,
    svc: &Service,
    ns: &str,
    name: &str,
    subsets: Vec<Value>,
) -> Result<(), Error> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let mut labels = svc.labels().clone();
    labels.insert(
        "endpoints.kubernetes.io/managed-by".into(),
        "endpoint-controller".into(),
    );
    // Owned by the Service so the collector removes them with it (upstream's
    // controller deletes them itself; the effect is the same).
    let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc.uid().unwrap_or_default()}]);
    let desired = json!({"metadata": {"name": name, "labels": labels, "ownerReferences": owner}, "subsets": subsets});
    match api.get_opt(name).await? {
        None => {
            api.create(&PostParams::default(), &serde_json::from_value(desired)?)
                .await?;
        }
        Some(cur) => {
            let cur_json = serde_json::to_value(&cur)?;
            let same = cur_json.get("subsets").unwrap_or(&json!([]))
                == desired.get("subsets").unwrap_or(&json!([]))
                && cur_json.pointer("/metadata/labels") == desired.pointer("/metadata/labels");
            if !same {
                let mut next = cur_json;
                next["subsets"] = desired["subsets"].clone();
                next["metadata"]["labels"] = desired["metadata"]["labels"].clone();
                api.replace(name, &PostParams::default(), &serde_json::from_value(next)?)
                    .await?;
            }
        }
    }
    Ok(())
}

fn slice_endpoint(ns: &str, m: &Member) -> Value {
    let mut e = json!({
        "addresses": [m.ip],
        "conditions": {"ready": m.ready, "serving": m.serving, "terminating": m.terminating},
        "targetRef": target_ref(ns, m),
    });
    if let Some(n) = &m.node {
        e["nodeName"] = json!(n);
    }
    if let Some(z) = &m.zone {
        e["zone"] = json!(z);
    }
    if let Some(h) = &m.hostname {
        e["hostname"] = json!(h);
    }
    e
}

async fn write_slices(
    client: &Client,
    svc: &Service,
    ns: &str,
    name: &str,
    members: &[Member],
) -> Result<(), Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let existing = api
        .list(&ListParams::default().labels(&format!(
            "kubernetes.io/service-name={name},endpointslice.kubernetes.io/managed-by={MANAGED_BY}"
        )))
        .await?
        .items;
    let ports: Vec<Value> = members
        .first()
        .map(|m| m.ports.clone())
        .unwrap_or_default()
        .iter()
        .map(|(n, p, proto)| {
            let mut v = json!({"port": p, "protocol": proto, "name": n});
            if n.is_empty() {
                v["name"] = json!("");
            }
            v
        })
        .collect();
    let mut labels = svc.labels().clone();
    labels.insert("kubernetes.io/service-name".into(), name.into());
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        MANAGED_BY.into(),
    );
    let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true}]);
    let chunks: Vec<&[Member]> = if members.is_empty() {
        vec![&[]]
    } else {
        members.chunks(MAX_PER_SLICE).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let endpoints: Vec<Value> = chunk.iter().map(|m| slice_endpoint(ns, m)).collect();
        match existing.get(i) {
            Some(cur) => {
                let cur_json = serde_json::to_value(cur)?;
                if cur_json.get("endpoints").unwrap_or(&json!([])) != &json!(endpoints)
                    || cur_json.get("ports").unwrap_or(&json!([])) != &json!(ports)
                {
                    let mut next = cur_json;
                    next["endpoints"] = json!(endpoints);
                    next["ports"] = json!(ports);
                    api.replace(
                        &cur.name_any(),
                        &PostParams::default(),
                        &serde_json::from_value(next)?,
                    )
                    .await?;
                }
            }
            None => {
                let slice = json!({
                    "metadata": {"generateName": format!("{name}-"), "labels": labels, "ownerReferences": owner},
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": ports,
                });
                api.create(&PostParams::default(), &serde_json::from_value(slice)?)
                    .await?;
            }
        }
    }
    for surplus in existing.iter().skip(chunks.len()) {
        let _ = api
            .delete(&surplus.name_any(), &DeleteParams::default())
            .await;
    }
    Ok(())
}
