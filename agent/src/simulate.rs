//! Simulated nodes (KWOK-like): one process registers N nodes, keeps their
//! Leases and status, and for pods bound to them writes what a kubelet would —
//! Running with an IP from the node's podCIDR, Ready; containers that exit
//! with `sim.skiff.dev/exit-code` after `sim.skiff.dev/run-seconds` (default 1),
//! honouring restartPolicy; graceful deletion finished at once. No process
//! runs: only the runtime is fake, the node and pod status code is the agent's.

use crate::node::{self, NodeInfo, KUBELET_VERSION, LEASE_RENEW_SECS};
use crate::podstatus::{self, Containers};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

pub const EXIT_CODE: &str = "sim.skiff.dev/exit-code";
pub const RUN_SECONDS: &str = "sim.skiff.dev/run-seconds";
/// API calls in flight at once.
const CONCURRENCY: usize = 32;

#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

/// Node `i`'s address: inside 198.18.0.0/15, the range set aside for
/// benchmarks (RFC 2544). Only ever written into objects, never contacted.
fn node_ip(i: usize) -> String {
    format!(
        "198.{}.{}.{}",
        18 + (i / 62500) % 2,
        (i / 250) % 250,
        i % 250 + 1
    )
}

/// The names of the nodes `opts` simulates.
pub fn node_names(opts: &Options) -> Vec<String> {
    (0..opts.nodes).map(|i| node_name(opts, i)).collect()
}

fn node_name(opts: &Options, i: usize) -> String {
    format!("{}-{i}", opts.name_prefix)
}

/// Whom the simulator acts as: one client for every node (an admin's
/// kubeconfig), or, joined with the token, a node identity of its own for
/// each node's writes, since NodeRestriction lets a node write only itself
/// and its pods. Watches go through the first.
#[derive(Clone)]
pub enum Clients {
    Shared(Client),
    PerNode(Client, Arc<HashMap<String, Client>>),
}

impl Clients {
    fn watching(&self) -> Client {
        match self {
            Clients::Shared(c) | Clients::PerNode(c, _) => c.clone(),
        }
    }

    /// The client that writes for `node`.
    fn of(&self, node: &str) -> Client {
        match self {
            Clients::Shared(c) => c.clone(),
            Clients::PerNode(c, each) => each.get(node).unwrap_or(c).clone(),
        }
    }
}

fn info(opts: &Options, i: usize) -> NodeInfo {
    let mut labels = serde_json::Map::new();
    labels.insert("type".into(), json!("simulated"));
    NodeInfo {
        name: node_name(opts, i),
        internal_ip: node_ip(i),
        cpu: opts.cpu.clone(),
        memory: opts.memory.clone(),
        pods: opts.pods,
        ephemeral_storage: "100Gi".into(),
        labels,
        kernel_version: "simulated".into(),
        os_image: "skiff simulated node".into(),
        container_runtime: "sim://0.1.0".into(),
        kubelet_version: KUBELET_VERSION.into(),
        reserved_cpu_millis: 0,
        reserved_memory: 0,
        images: Vec::new(),
        pressure: Default::default(),
        kubelet_port: 10250,
    }
}

#[allow(clippy::large_enum_variant)] // watch events dominate; boxing them buys nothing
enum Msg {
    Pod(watcher::Event<Pod>),
    Node(watcher::Event<Node>),
    /// The containers of this pod (uid) reached the end of their run.
    Exit(String),
    /// Their back-off is over: start them again.
    Restart(String),
}

struct PodState {
    pod: Value,
    node: String,
    ip: String,
    restarts: i64,
    finished: bool,
}

/// Runs the simulated nodes until the process ends.
pub async fn run(clients: Clients, opts: Options) -> anyhow::Result<()> {
    let infos: Vec<NodeInfo> = (0..opts.nodes).map(|i| info(&opts, i)).collect();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let uids = register_all(&clients, &infos, &limit).await?;
    tracing::info!(nodes = infos.len(), prefix = %opts.name_prefix, "simulated nodes registered");
    tokio::spawn(heartbeat(
        clients.clone(),
        infos.clone(),
        uids,
        limit.clone(),
    ));
    let client = clients.watching();

    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    let pods: Api<Pod> = Api::all(client.clone());
    let tx_pods = tx.clone();
    tokio::spawn(async move {
        let cfg = watcher::Config::default().fields("spec.nodeName!=");
        let mut s = watcher(pods, cfg).boxed();
        while let Some(ev) = s.next().await {
            if let Ok(ev) = ev {
                if tx_pods.send(Msg::Pod(ev)).await.is_err() {
                    return;
                }
            }
        }
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let tx_nodes = tx.clone();
    tokio::spawn(async move {
        let mut s = watcher(nodes, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            if let Ok(ev) = ev {
                if tx_nodes.send(Msg::Node(ev)).await.is_err() {
                    return;
                }
            }
        }
    });

    let mut sim = Sim {
        clients,
        limit,
        tx,
        ours: infos
            .iter()
            .map(|n| (n.name.clone(), n.internal_ip.clone()))
            .collect(),
        cidrs: HashMap::new(),
        used_ips: HashMap::new(),
        pods: HashMap::new(),
        deleting: HashSet::new(),
        waiting: HashMap::new(),
    };
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Node(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => sim.on_node(n),
            Msg::Node(_) => {}
            Msg::Pod(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => sim.on_pod(p),
            Msg::Pod(watcher::Event::Delete(p)) => sim.on_pod_gone(&p),
            Msg::Pod(_) => {}
            Msg::Restart(uid) => sim.on_restart(&uid),
            Msg::Exit(uid) => sim.on_exit(&uid),
        }
    }
    Ok(())
}

/// The simulated nodes' runtime state, owned by the event loop.
struct Sim {
    clients: Clients,
    limit: Arc<Semaphore>,
    tx: mpsc::Sender<Msg>,
    /// Our nodes' names and addresses.
    ours: HashMap<String, String>,
    /// Our nodes' pod CIDRs, once node IPAM gave them.
    cidrs: HashMap<String, String>,
    used_ips: HashMap<String, HashSet<u8>>,
    /// Running (or finished) pods by uid.
    pods: HashMap<String, PodState>,
    deleting: HashSet<String>,
    /// Pods bound to a node that has no pod CIDR yet, by node.
    waiting: HashMap<String, Vec<Pod>>,
}

impl Sim {
    fn on_node(&mut self, n: Node) {
        let name = n.name_any();
        if !self.ours.contains_key(&name) {
            return;
        }
        if let Some(cidr) = n.spec.and_then(|s| s.pod_cidr) {
            self.cidrs.insert(name.clone(), cidr);
            for p in self.waiting.remove(&name).unwrap_or_default() {
                self.on_pod(p);
            }
        }
    }

    fn on_pod(&mut self, p: Pod) {
        let Some(node_name) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        let Some(host_ip) = self.ours.get(&node_name) else {
            return;
        };
        let uid = p.uid().unwrap_or_default();
        if p.metadata.deletion_timestamp.is_some() {
            // Containers stop at once; the deletion completes with grace 0.
            if self.deleting.insert(uid.clone()) {
                let client = self.clients.of(&node_name);
                spawn_call(&self.limit, finish_deletion(client, p));
            }
            return;
        }
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if self.pods.contains_key(&uid) || phase == "Succeeded" || phase == "Failed" {
            if let Some(st) = self.pods.get_mut(&uid) {
                st.pod = serde_json::to_value(&p).unwrap_or_default();
            }
            return;
        }
        let Some(cidr) = self.cidrs.get(&node_name) else {
            let waiting = self.waiting.entry(node_name).or_default();
            // The same pod seen again (an update, a re-list) replaces its earlier copy.
            waiting.retain(|w| w.metadata.uid != p.metadata.uid);
            waiting.push(p);
            return;
        };
        let Some(ip) = allocate_ip(cidr, self.used_ips.entry(node_name.clone()).or_default())
        else {
            tracing::warn!(node = %node_name, "no pod IP left");
            return;
        };
        let pod = serde_json::to_value(&p).unwrap_or_default();
        let exit = annotation(&pod, EXIT_CODE).and_then(|s| s.parse::<i64>().ok());
        if exit.is_some() {
            schedule_exit(&self.tx, &uid, &pod);
        }
        let status = podstatus::status(&pod, &Containers::Running, &ip, host_ip, "sim");
        spawn_call(
            &self.limit,
            write_status(
                self.clients.of(&node_name),
                p.namespace().unwrap_or_default(),
                p.name_any(),
                status,
            ),
        );
        self.pods.insert(
            uid,
            PodState {
                pod,
                node: node_name,
                ip,
                restarts: 0,
                finished: false,
            },
        );
    }

    fn on_pod_gone(&mut self, p: &Pod) {
        let uid = p.uid().unwrap_or_default();
        self.deleting.remove(&uid);
        if let Some(st) = self.pods.remove(&uid) {
            release_ip(&st.ip, self.used_ips.entry(st.node).or_default());
        }
        if let Some(waiting) = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| self.waiting.get_mut(n))
        {
            waiting.retain(|w| w.metadata.uid != p.metadata.uid);
        }
    }

    fn on_restart(&mut self, uid: &str) {
        let Some(st) = self.pods.get_mut(uid) else {
            return;
        };
        st.restarts += 1;
        schedule_exit(&self.tx, uid, &st.pod);
        let code = annotation(&st.pod, EXIT_CODE)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        let containers = Containers::Restarted {
            exit_code: code,
            restarts: st.restarts,
        };
        let host_ip = self.ours.get(&st.node).map(String::as_str).unwrap_or("");
        spawn_call(
            &self.limit,
            report(self.clients.of(&st.node), st, &containers, host_ip),
        );
    }

    fn on_exit(&mut self, uid: &str) {
        let Some(st) = self.pods.get_mut(uid) else {
            return;
        };
        if st.finished {
            return;
        }
        let code = annotation(&st.pod, EXIT_CODE)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        let policy = st
            .pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always");
        let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
        let containers = if restart {
            // Upstream's CrashLoopBackOff: 10 s, doubling, at most 5 min.
            let delay_secs = (10u64 << st.restarts.min(5)).min(300);
            let (tx, uid) = (self.tx.clone(), uid.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(delay_secs)).await;
                let _ = tx.send(Msg::Restart(uid)).await;
            });
            Containers::BackOff {
                exit_code: code,
                restarts: st.restarts,
                delay_secs,
            }
        } else {
            st.finished = true;
            Containers::Exited(code)
        };
        let host_ip = self.ours.get(&st.node).map(String::as_str).unwrap_or("");
        spawn_call(
            &self.limit,
            report(self.clients.of(&st.node), st, &containers, host_ip),
        );
    }
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn schedule_exit(tx: &mpsc::Sender<Msg>, uid: &str, pod: &Value) {
    let secs = annotation(pod, RUN_SECONDS)
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0)
        .max(0.0);
    let (tx, uid) = (tx.clone(), uid.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let _ = tx.send(Msg::Exit(uid)).await;
    });
}

/// The next free host address of a /24 (from .2; .1 is the node's gateway).
fn allocate_ip(cidr: &str, used: &mut HashSet<u8>) -> Option<String> {
    let base = cidr.split('/').next()?;
    let prefix = base.rsplit_once('.')?.0;
    let host = (2..=254u8).find(|h| !used.contains(h))?;
    used.insert(host);
    Some(format!("{prefix}.{host}"))
}

fn release_ip(ip: &str, used: &mut HashSet<u8>) {
    if let Some(h) = ip.rsplit('.').next().and_then(|h| h.parse::<u8>().ok()) {
        used.remove(&h);
    }
}

fn spawn_call<F>(limit: &Arc<Semaphore>, fut: F)
where
    F: std::future::Future<Output = Result<(), kube::Error>> + Send + 'static,
{
    let limit = limit.clone();
    tokio::spawn(async move {
        let _permit = limit.acquire().await;
        if let Err(e) = fut.await {
            tracing::debug!(error = %e, "simulated node API call failed");
        }
    });
}

/// Writes the status for how a tracked pod's containers now stand.
fn report(
    client: Client,
    st: &PodState,
    containers: &Containers,
    host_ip: &str,
) -> impl std::future::Future<Output = Result<(), kube::Error>> {
    let status = podstatus::status(&st.pod, containers, &st.ip, host_ip, "sim");
    let field = |p: &str| {
        st.pod
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    write_status(
        client,
        field("/metadata/namespace"),
        field("/metadata/name"),
        status,
    )
}

async fn write_status(
    client: Client,
    ns: String,
    name: String,
    status: Value,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    match pods
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn finish_deletion(client: Client, pod: Pod) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client, &pod.namespace().unwrap_or_default());
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn register_all(
    clients: &Clients,
    infos: &[NodeInfo],
    limit: &Arc<Semaphore>,
) -> anyhow::Result<Vec<Option<String>>> {
    let tasks: Vec<_> = infos
        .iter()
        .cloned()
        .map(|info| {
            let (client, limit) = (clients.of(&info.name), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire().await;
                let node = node::register(&client, &info).await?;
                let uid = node.metadata.uid.clone();
                node::renew_lease(&client, &info.name, uid.as_deref()).await?;
                Ok::<_, kube::Error>(uid)
            })
        })
        .collect();
    let mut uids = Vec::with_capacity(tasks.len());
    for t in tasks {
        uids.push(t.await??);
    }
    Ok(uids)
}

/// Leases every 10 s; node status every minute (upstream reports it at least every 5).
async fn heartbeat(
    clients: Clients,
    infos: Vec<NodeInfo>,
    uids: Vec<Option<String>>,
    limit: Arc<Semaphore>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(LEASE_RENEW_SECS));
    let mut round: u64 = 0;
    loop {
        tick.tick().await;
        round += 1;
        let status_round = round.is_multiple_of(6);
        let mut tasks = Vec::with_capacity(infos.len());
        for (info, uid) in infos.iter().zip(&uids) {
            let (client, limit, info, uid) = (
                clients.of(&info.name),
                limit.clone(),
                info.clone(),
                uid.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire().await;
                if let Err(e) = node::renew_lease(&client, &info.name, uid.as_deref()).await {
                    tracing::debug!(node = %info.name, error = %e, "lease renewal failed");
                }
                if status_round {
                    let _ = node::report_status(&client, &info).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let mut used = HashSet::new();
        assert_eq!(allocate_ip("10.42.3.0/24", &mut used).unwrap(), "10.42.3.2");
        assert_eq!(allocate_ip("10.42.3.0/24", &mut used).unwrap(), "10.42.3.3");
        release_ip("10.42.3.2", &mut used);
        assert_eq!(allocate_ip("10.42.3.0/24", &mut used).unwrap(), "10.42.3.2");
        assert_eq!(node_ip(0), "198.18.0.1");
        assert_eq!(node_ip(251), "198.18.1.2");
    }
}
