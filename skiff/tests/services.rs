//! Services that really route, on a real node (its own network namespace,
//! real containers, the agent's proxy writing iptables there — or nftables,
//! with `--proxy-mode nftables`), driven by
//! the real kubectl: a Deployment behind a ClusterIP and NodePort Service,
//! scaled and with a pod deleted; a Service without endpoints refused at
//! once; a LoadBalancer Service answering on the node's address, only to
//! the sources its loadBalancerSourceRanges allow. Requests
//! go only to addresses inside the node's namespace.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::eventually;
use common::realnode::pods::ready_node;
use common::realnode::{missing, RealNode};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

const IMAGE: &str = "localhost/busybox:latest";

fn skip() -> bool {
    if let Some(why) = missing() {
        eprintln!("skipping the service tests: {why}");
        return true;
    }
    false
}

/// A Deployment of `replicas` web servers answering with their pod's name,
/// and a Service `name` of `ty` in front of them.
fn web(name: &str, replicas: u32, ty: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: {ty}
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

const PROBE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

/// Runs `script` in the probe pod; its stdout.
fn in_probe(node: &RealNode, script: &str) -> String {
    let out = node
        .server
        .kubectl(&["exec", "probe", "--", "sh", "-c", script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n` requests to `url` from the probe pod: answers by pod, and failures.
fn requests(node: &RealNode, url: &str, n: u32) -> (BTreeMap<String, u32>, u32) {
    let script = format!(
        "for i in $(seq {n}); do timeout 5 wget -q -O - {url} 2>/dev/null || echo FAILED; done"
    );
    let mut by_pod = BTreeMap::new();
    let mut failed = 0;
    for line in in_probe(node, &script).lines() {
        if line == "FAILED" {
            failed += 1;
        } else {
            *by_pod.entry(line.to_string()).or_default() += 1;
        }
    }
    (by_pod, failed)
}

async fn ready_endpoints(c: &kube::Client, svc: &str) -> Vec<String> {
    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await
        .unwrap();
    let mut out: Vec<String> = list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.clone())
        .collect();
    out.sort();
    out
}

const STATEFUL: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#;

#[tokio::test]
async fn names_resolve_inside_pods() {
    if skip() {
        return;
    }
    let node = RealNode::start("dns-node");
    let c = ready_node(&node).await;
    node.server.apply("default", &web("web", 2, "ClusterIP"));
    node.server.apply("default", STATEFUL);
    node.server.apply("default", PROBE);
    node.server
        .ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    node.server
        .ok(&["rollout", "status", "sts/db", "--timeout=120s"]);
    node.server.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/probe",
        "--timeout=60s",
    ]);
    // The node's DNS is this node's endpoint of kube-dns.
    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "kube-system");
    eventually("the node's kube-dns endpoint", 30, async || {
        slices
            .get_opt("kube-dns-dns-node")
            .await
            .unwrap()
            .is_some_and(|s| s.endpoints[0].addresses == [node.node_ip.clone()])
    })
    .await;
    eventually("web resolving by its short name", 30, async || {
        requests(&node, "http://web/", 1).1 == 0
    })
    .await;
    // Short, namespaced and full names, through the Service.
    for name in [
        "web",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
    ] {
        let (by_pod, failed) = requests(&node, &format!("http://{name}/"), 3);
        assert_eq!(failed, 0, "{name}");
        assert!(
            by_pod.keys().all(|p| p.starts_with("web-")),
            "{name}: {by_pod:?}"
        );
    }
    // StatefulSet pods by name, under their headless Service.
    for pod in ["db-0", "db-1"] {
        let out = in_probe(
            &node,
            &format!("timeout 5 wget -q -O - http://{pod}.db:8080/"),
        );
        assert_eq!(out.trim(), pod);
    }
    // The headless name answers the pods' addresses; SRV names the pods.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.clone(), "default");
    let out = in_probe(&node, "nslookup db.default.svc.cluster.local");
    for pod in ["db-0", "db-1"] {
        let ip = pods.get(pod).await.unwrap().status.unwrap().pod_ip.unwrap();
        assert!(out.contains(&format!("Address: {ip}")), "{out}");
    }
    let out = in_probe(
        &node,
        "nslookup -type=srv _http._tcp.db.default.svc.cluster.local",
    );
    assert!(
        out.contains("8080 db-0.db.default.svc.cluster.local"),
        "{out}"
    );
    assert!(
        out.contains("8080 db-1.db.default.svc.cluster.local"),
        "{out}"
    );
    // NXDOMAIN for a name that is not there.
    let out = in_probe(&node, "nslookup nothing.default.svc.cluster.local 2>&1");
    assert!(out.contains("NXDOMAIN"), "{out}");
}

/// The proxy mode a node runs, and how its rules are looked at.
#[derive(Clone, Copy)]
enum Mode {
    Iptables,
    Nftables,
}

impl Mode {
    /// The rules that route (nat), as iptables-save or nft list them.
    fn nat_rules(self, node: &RealNode) -> String {
        let out = match self {
            Mode::Iptables => node.on_node(&["iptables-save", "-t", "nat"]),
            Mode::Nftables => node.on_node(&["nft", "list", "table", "ip", "skiff"]),
        };
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the rules send traffic to `ip`:8080.
    fn routes_to(self, node: &RealNode, ip: &str) -> bool {
        let rules = self.nat_rules(node);
        match self {
            Mode::Iptables => rules.contains(&format!("--to-destination {ip}:8080")),
            // An element of an endpoint map, or a DNAT of its own.
            Mode::Nftables => {
                rules.contains(&format!(": {ip} . 8080")) || rules.contains(&format!("{ip}:8080"))
            }
        }
    }

    /// Whether traffic to `ip` is refused (the Service has no endpoints).
    fn refuses(self, node: &RealNode, ip: &str) -> bool {
        match self {
            Mode::Iptables => {
                let filter = node.on_node(&["iptables-save", "-t", "filter"]);
                String::from_utf8_lossy(&filter.stdout).contains(&format!("-d {ip}/32"))
            }
            Mode::Nftables => self
                .nat_rules(node)
                .contains(&format!("{ip} . tcp . 80 : goto reject-chain")),
        }
    }
}

#[tokio::test]
async fn services_route_scale_and_refuse() {
    route_scale_and_refuse(Mode::Iptables).await;
}

/// The same with `--proxy-mode nftables`.
#[tokio::test]
async fn services_route_scale_and_refuse_with_nftables() {
    route_scale_and_refuse(Mode::Nftables).await;
}

async fn route_scale_and_refuse(mode: Mode) {
    if skip() {
        return;
    }
    let node = match mode {
        Mode::Iptables => RealNode::start("svc-node"),
        Mode::Nftables => RealNode::start_with("svc-nft-node", &["--proxy-mode", "nftables"]),
    };
    let c = ready_node(&node).await;
    node.server.apply("default", &web("web", 3, "NodePort"));
    node.server.apply("default", PROBE);
    node.server
        .ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    node.server.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/probe",
        "--timeout=60s",
    ]);
    let svc: Service = Api::namespaced(c.clone(), "default")
        .get("web")
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    let cluster_ip = spec.cluster_ip.unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap();
    eventually("3 ready endpoints", 30, async || {
        ready_endpoints(&c, "web").await.len() == 3
    })
    .await;
    let url = format!("http://{cluster_ip}/");
    // The rules follow the endpoints within the proxy's sync interval: the
    // third endpoint may be ready a sync before the rules have it (CI saw
    // 300 requests reach two pods).
    eventually(
        "the cluster IP answering from all three pods",
        30,
        async || requests(&node, &url, 30).0.len() == 3,
    )
    .await;

    // 300 requests through the cluster IP reach all three pods.
    let (by_pod, failed) = requests(&node, &url, 300);
    assert_eq!(failed, 0, "{by_pod:?}");
    assert_eq!(by_pod.len(), 3, "{by_pod:?}");

    // Scaled to 5: the new pods get traffic too.
    node.server.ok(&["scale", "deploy/web", "--replicas=5"]);
    eventually("5 ready endpoints", 60, async || {
        ready_endpoints(&c, "web").await.len() == 5
    })
    .await;
    eventually("traffic reaching all 5 pods", 60, async || {
        let (by_pod, failed) = requests(&node, &url, 100);
        failed == 0 && by_pod.len() == 5
    })
    .await;

    // A pod deleted: once its endpoint is gone from the rules, no request
    // fails.
    let victim = requests(&node, &url, 1).0.into_keys().next().unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.clone(), "default");
    let ip = pods
        .get(&victim)
        .await
        .unwrap()
        .status
        .unwrap()
        .pod_ip
        .unwrap();
    node.server.ok(&["delete", "pod", &victim, "--wait=false"]);
    eventually(
        "the deleted pod's endpoint out of the rules",
        30,
        async || !mode.routes_to(&node, &ip),
    )
    .await;
    let (by_pod, failed) = requests(&node, &url, 100);
    assert_eq!(failed, 0, "{by_pod:?}");
    assert!(!by_pod.contains_key(&victim));

    // The node port answers on the node's address, from outside the node.
    let np_url = format!("http://{}:{node_port}/", node.node_ip);
    let out = std::process::Command::new("timeout")
        .args(["5", "busybox", "wget", "-q", "-O", "-", &np_url])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("web-"),
        "{np_url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A Service without endpoints is refused at once, not left to time out.
    node.server.apply(
        "default",
        "apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nothing}\n  ports: [{port: 80}]\n",
    );
    let empty: Service = Api::namespaced(c.clone(), "default")
        .get("empty")
        .await
        .unwrap();
    let empty_ip = empty.spec.unwrap().cluster_ip.unwrap();
    eventually("the empty service's REJECT rule", 30, async || {
        mode.refuses(&node, &empty_ip)
    })
    .await;
    let started = Instant::now();
    let out = in_probe(
        &node,
        &format!("timeout 5 wget -q -O - http://{empty_ip}/ 2>&1; echo exit=$?"),
    );
    assert!(out.contains("refused"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(4), "{out}");

    // A LoadBalancer Service gets the node's address and answers there.
    node.server.apply("default", &web("lb", 1, "LoadBalancer"));
    node.server
        .ok(&["rollout", "status", "deploy/lb", "--timeout=120s"]);
    eventually("the load balancer's ingress", 30, async || {
        let s: Service = Api::namespaced(c.clone(), "default")
            .get("lb")
            .await
            .unwrap();
        s.status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_some_and(|i| {
                i.iter()
                    .any(|i| i.ip.as_deref() == Some(node.node_ip.as_str()))
            })
    })
    .await;
    let row = node.server.ok(&["get", "svc", "lb", "--no-headers"]);
    assert!(row.contains(&node.node_ip), "{row}");
    let lb_url = format!("http://{}:80/", node.node_ip);
    eventually("the load balancer answering", 30, async || {
        let out = std::process::Command::new("timeout")
            .args(["5", "busybox", "wget", "-q", "-O", "-", &lb_url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).starts_with("lb-")
    })
    .await;
    // With the Local policy it gets a health check port, where the node
    // says how many of its endpoints it has (kube-proxy's answer).
    node.server.ok(&[
        "patch",
        "svc",
        "lb",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    let hc = node.server.ok(&[
        "get",
        "svc",
        "lb",
        "-o",
        "jsonpath={.spec.healthCheckNodePort}",
    ]);
    let hc_url = format!("http://{}:{hc}/", node.node_ip);
    eventually("the health check answering", 30, async || {
        let out = std::process::Command::new("timeout")
            .args(["5", "busybox", "wget", "-q", "-O", "-", &hc_url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(r#""localEndpoints":1"#)
    })
    .await;
    // loadBalancerSourceRanges: the host (a client outside the node) gets
    // through while its address is in them, and is dropped once it is not.
    let lb_answers = |timeout: &str| {
        let out = std::process::Command::new("timeout")
            .args([timeout, "busybox", "wget", "-q", "-O", "-", &lb_url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).starts_with("lb-")
    };
    let ranges = |cidr: &str| {
        node.server.ok(&[
            "patch",
            "svc",
            "lb",
            "-p",
            &format!(r#"{{"spec":{{"loadBalancerSourceRanges":["{cidr}"]}}}}"#),
        ]);
    };
    ranges(&format!("{}/32", node.host_ip));
    eventually("the allowed source answered", 30, async || lb_answers("5")).await;
    ranges("192.0.2.0/24");
    eventually("another source dropped", 30, async || !lb_answers("2")).await;
    let nat = mode.nat_rules(&node);
    assert!(nat.contains("192.0.2.0/24"), "{nat}");
    ranges(&format!("{}/32", node.host_ip));
    eventually("the allowed source again", 30, async || lb_answers("5")).await;

    // A pod reaches itself through its own Service (hairpin): from one
    // of five backends, a fifth of requests come back to it.
    let me = requests(&node, &url, 1).0.into_keys().next().unwrap();
    let out = node.server.kubectl(&[
        "exec",
        &me,
        "--",
        "sh",
        "-c",
        &format!("for i in $(seq 30); do timeout 5 wget -q -O - {url} || echo FAILED; done"),
    ]);
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.contains("FAILED"), "{out}");
    assert!(out.lines().any(|l| l == me), "never reached itself: {out}");

    // The proxy says it is healthy.
    let health = node.on_node(&[
        "timeout",
        "5",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1:10256/healthz",
    ]);
    assert_eq!(String::from_utf8_lossy(&health.stdout), "ok");
}
