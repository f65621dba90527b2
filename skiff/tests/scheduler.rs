//! The scheduler against a real `skiff server`, with node objects made by
//! hand (no agent): each plugin's decision on small cases, the reasons users
//! see for pods that fit nowhere, retries when room appears, preemption,
//! and leader election between two schedulers.

mod common;

use common::{default_service_account, eventually, Server, Simulator, Spawned};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// No agent renews leases here: keep the lifecycle controller from tainting the nodes.
fn server() -> Server {
    Server::start_with(None, &["--node-monitor-grace-period", "1h"])
}

async fn node(c: &Client, name: &str, cpu: &str, labels: Value, taints: Value) {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let resources = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"capacity": resources, "allocatable": resources,
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap();
    Api::<Node>::all(c.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();
}

async fn pod(c: &Client, name: &str, labels: Value, spec: Value) {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels}, "spec": spec
    }))
    .unwrap();
    Api::<Pod>::namespaced(c.clone(), "default")
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

/// Requests `cpu` in one container.
fn cpu(cpu: &str) -> Value {
    json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]})
}

async fn node_of(c: &Client, name: &str) -> Option<String> {
    Api::<Pod>::namespaced(c.clone(), "default")
        .get(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.node_name)
}

async fn bound(c: &Client, name: &str) -> String {
    eventually(&format!("{name} bound"), 20, async || {
        node_of(c, name).await.is_some()
    })
    .await;
    node_of(c, name).await.unwrap()
}

/// The PodScheduled=False message, once the scheduler has given up on the pod.
async fn unschedulable(c: &Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let message = async || {
        pods.get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message)
    };
    eventually(&format!("{name} unschedulable"), 20, async || {
        message().await.is_some()
    })
    .await;
    message().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_say_why_and_bind_when_room_appears() {
    let s = server();
    let c = s.client().await;
    default_service_account(&c).await;
    node(
        &c,
        "cp",
        "8",
        json!({}),
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
    )
    .await;
    node(&c, "small", "1", json!({}), json!([])).await;
    pod(&c, "big", json!({}), cpu("2")).await;
    let expected = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.";
    assert_eq!(unschedulable(&c, "big").await, expected);
    let described = s.ok(&["describe", "pod", "big"]);
    assert!(described.contains("FailedScheduling"), "{described}");
    assert!(described.contains(expected), "{described}");

    // A node with room is an event that retries the pod; no polling needed.
    node(&c, "large", "4", json!({}), json!([])).await;
    assert_eq!(bound(&c, "big").await, "large");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=big",
    ]);
    assert!(
        events.contains("Successfully assigned default/big to large"),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_decide_as_upstream() {
    let s = server();
    let c = s.client().await;
    default_service_account(&c).await;
    let zone = |z: &str| json!({"topology.kubernetes.io/zone": z});
    node(&c, "a1", "4", zone("a"), json!([])).await;
    node(&c, "a2", "4", zone("a"), json!([])).await;
    node(&c, "b1", "4", zone("b"), json!([])).await;

    // NodeAffinity: nodeSelector, and matchFields on the node's name.
    pod(
        &c,
        "in-b",
        json!({}),
        json!({"nodeSelector": {"topology.kubernetes.io/zone": "b"}}),
    )
    .await;
    assert_eq!(bound(&c, "in-b").await, "b1");
    pod(&c, "named", json!({}), json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a2"]}]}]}}}})).await;
    assert_eq!(bound(&c, "named").await, "a2");

    // NodePorts: one host port user per node.
    for i in 0..4 {
        pod(&c, &format!("port-{i}"), json!({}), json!({"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 8080}]}]})).await;
    }
    let mut port_nodes = Vec::new();
    for i in 0..3 {
        port_nodes.push(bound(&c, &format!("port-{i}")).await);
    }
    port_nodes.sort();
    assert_eq!(port_nodes, ["a1", "a2", "b1"]);
    assert!(unschedulable(&c, "port-3").await.starts_with(
        "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports."
    ));

    // PodTopologySpread: four pods over zones a (two nodes) and b (one) go 2 + 2.
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    let mut zones: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4 {
        let name = format!("spread-{i}");
        pod(&c, &name, json!({"app": "spread"}), spread.clone()).await;
        let node = bound(&c, &name).await;
        *zones.entry(node[..1].to_string()).or_default() += 1;
    }
    assert_eq!(zones, BTreeMap::from([("a".into(), 2), ("b".into(), 2)]));

    // InterPodAffinity: required anti-affinity by hostname, one per node;
    // required affinity follows its leader's zone.
    let solo = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "solo"}}}]}}});
    for i in 0..3 {
        pod(
            &c,
            &format!("solo-{i}"),
            json!({"app": "solo"}),
            solo.clone(),
        )
        .await;
        bound(&c, &format!("solo-{i}")).await;
    }
    pod(&c, "solo-3", json!({"app": "solo"}), solo).await;
    assert!(unschedulable(&c, "solo-3")
        .await
        .starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."));
    pod(
        &c,
        "leader",
        json!({"app": "leader"}),
        json!({"nodeName": "b1"}),
    )
    .await;
    pod(&c, "follower", json!({}), json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "leader"}}}]}}})).await;
    assert_eq!(bound(&c, "follower").await, "b1");

    // NodeResourcesFit counts an init container at its peak.
    pod(&c, "init-heavy", json!({}), json!({"initContainers": [{"name": "i", "image": "busybox", "resources": {"requests": {"cpu": "5"}}}], "containers": [{"name": "c", "image": "busybox"}]})).await;
    assert!(unschedulable(&c, "init-heavy")
        .await
        .starts_with("0/3 nodes are available: 3 Insufficient cpu."));

    // TaintToleration: only a tolerating pod lands on a tainted node.
    Api::<Node>::all(c.clone())
        .patch("a1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})))
        .await
        .unwrap();
    let on_a1 = json!({"kubernetes.io/hostname": "a1"});
    pod(&c, "tolerant", json!({}), json!({"nodeSelector": on_a1, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]})).await;
    assert_eq!(bound(&c, "tolerant").await, "a1");
    pod(&c, "intolerant", json!({}), json!({"nodeSelector": on_a1})).await;
    assert_eq!(
        unschedulable(&c, "intolerant").await,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_and_preemption() {
    let s = server();
    let c = s.client().await;
    default_service_account(&c).await;
    s.apply(
        "default",
        r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: polite}
value: 1000
preemptionPolicy: Never
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 10
globalDefault: true
"#,
    );
    // A simulated node (8 cpu), so preemption's victims really go away.
    let _sim = Simulator::start(&s, 1, "only");
    for i in 0..2 {
        pod(&c, &format!("low-{i}"), json!({}), cpu("4")).await;
        bound(&c, &format!("low-{i}")).await;
    }
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let low = pods.get("low-0").await.unwrap().spec.unwrap();
    assert_eq!(
        (low.priority, low.priority_class_name.as_deref()),
        (Some(10), Some("low"))
    );

    // Never preempts: waits, and says so.
    let mut polite = cpu("5");
    polite["priorityClassName"] = json!("polite");
    pod(&c, "polite", json!({}), polite).await;
    assert_eq!(
        unschedulable(&c, "polite").await,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    pods.delete("polite", &DeleteParams::default())
        .await
        .unwrap();

    // High priority evicts exactly one low pod and takes its place.
    let mut vip = cpu("4");
    vip["priorityClassName"] = json!("high");
    pod(&c, "vip", json!({}), vip).await;
    assert_eq!(bound(&c, "vip").await, "only-0");
    let vip = pods.get("vip").await.unwrap();
    assert_eq!(
        vip.status.unwrap().nominated_node_name.as_deref(),
        Some("only-0")
    );
    let left: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("low-"))
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(left.len(), 1, "one victim, not both: {left:?}");

    // A class that does not exist is refused at admission.
    let mut ghost = cpu("1");
    ghost["priorityClassName"] = json!("ghost");
    let p: Pod =
        serde_json::from_value(json!({"metadata": {"name": "ghost"}, "spec": ghost})).unwrap();
    let err = pods.create(&PostParams::default(), &p).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 403 && e.message.contains("no PriorityClass with name ghost was found")),
        "{err}"
    );
}

/// Two schedulers on one server: exactly one holds the Lease and binds;
/// when it dies the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_among_two_schedulers() {
    use k8s_openapi::api::coordination::v1::Lease;
    use std::process::{Command, Stdio};

    let s = Server::start_with(
        None,
        &["--disable-scheduler", "--node-monitor-grace-period", "1h"],
    );
    let c = s.client().await;
    default_service_account(&c).await;
    let metrics_ports = [common::free_port(), common::free_port()];
    let spawn = |i: usize| {
        let log = format!("s{i}.log");
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["scheduler", "--scheduler-metrics-address"])
            .arg(format!("127.0.0.1:{}", metrics_ports[i]))
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(s.dir.path().join(log)).unwrap())
            .spawn()
            .map(Spawned)
            .unwrap()
    };
    let mut schedulers = [spawn(0), spawn(1)];
    node(&c, "n", "8", json!({}), json!([])).await;
    pod(&c, "first", json!({}), json!({})).await;
    assert_eq!(bound(&c, "first").await, "n");

    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-system");
    let holder = async || {
        leases
            .get("kube-scheduler")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .unwrap()
    };
    let first_holder = holder().await;
    let leading: Vec<usize> = (0..2)
        .filter(|i| {
            std::fs::read_to_string(s.dir.path().join(format!("s{i}.log")))
                .unwrap()
                .contains("became leader")
        })
        .collect();
    assert_eq!(leading.len(), 1, "exactly one leader");
    // The leader's /metrics counts the binding and shows empty queues.
    let metrics = metrics_text(metrics_ports[leading[0]]);
    assert!(
        metrics.contains("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_pending_pods{queue=\"active\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_pod_scheduling_sli_duration_seconds_count 1\n"),
        "{metrics}"
    );
    let _ = schedulers[leading[0]].0.kill();
    let _ = schedulers[leading[0]].0.wait();

    // The lease runs out (15 s) and the survivor takes over.
    pod(&c, "second", json!({}), json!({})).await;
    eventually("the second scheduler to bind", 40, async || {
        node_of(&c, "second").await.is_some()
    })
    .await;
    assert_ne!(holder().await, first_holder);
}

/// GET /metrics over plain HTTP on loopback.
fn metrics_text(port: u16) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    body
}
