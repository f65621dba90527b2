//! `kubectl top` against a real node: the agent's `/stats/summary` and
//! `/metrics/resource` read from the containers' cgroups, and the API
//! server's built-in metrics.k8s.io (discovery, get, list, selectors,
//! tables, errors) turning them into the numbers kubectl prints: a pod
//! spinning a cpu shows well over 100m, one holding 32 MiB in a memory-backed
//! emptyDir shows at least 30Mi. Needs root, runc, the CNI plugins,
//! busybox-static, kubectl and curl; skipped otherwise.

mod common;

use common::realnode::{client_cert, missing, RealNode};
use common::{default_service_account, eventually};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/busybox:latest";

fn skip() -> bool {
    let why = missing()
        .or_else(|| (!common::have_kubectl()).then(|| "needs kubectl".to_string()))
        .or_else(|| {
            Command::new("curl")
                .arg("--version")
                .output()
                .is_err()
                .then(|| "needs curl".to_string())
        });
    if let Some(why) = why {
        eprintln!("skipping the kubectl top tests: {why}");
        return true;
    }
    false
}

/// kubectl with a bounded wait for the server.
fn kubectl(node: &RealNode, args: &[&str]) -> Output {
    let mut all = vec!["--request-timeout=30s"];
    all.extend_from_slice(args);
    node.server.kubectl(&all)
}

fn ok(node: &RealNode, args: &[&str]) -> String {
    let out = kubectl(node, args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(node: &RealNode, args: &[&str]) -> String {
    let out = kubectl(node, args);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", script]})
}

fn pod(name: &str, containers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": containers},
    })
}

async fn wait_running(client: &kube::Client, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(&format!("{name} to run"), 90, async || {
        pods.get_opt(name)
            .await
            .unwrap()
            .is_some_and(|p| common::pod_ready(&p))
    })
    .await;
}

/// `123m` → 123, `2` → 2000 (kubectl top prints millicores).
fn millicores(cell: &str) -> u64 {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => cell.parse::<u64>().unwrap() * 1000,
    }
}

/// `32Mi` → 32 (kubectl top prints mebibytes).
fn mebibytes(cell: &str) -> u64 {
    cell.strip_suffix("Mi")
        .unwrap_or_else(|| panic!("{cell}"))
        .parse()
        .unwrap()
}

/// The rows of a kubectl table, header first, split into cells.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// kubectl top's rows (header dropped), once it has numbers for `want`.
async fn top(node: &RealNode, args: &[&str], want: &[&str]) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = kubectl(node, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows = rows(&text);
        let has = |name: &&str| rows.iter().skip(1).any(|r| r.iter().any(|c| c == name));
        if out.status.success() && want.iter().all(|w| has(&w)) {
            eprintln!("kubectl {}\n{text}", args.join(" "));
            return rows.into_iter().skip(1).collect();
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} never showed {want:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn kubectl_top_nodes_and_pods() {
    if skip() {
        return;
    }
    let node = RealNode::start("top-node");
    let client = node.server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the node to register", 30, async || {
        nodes.get_opt(&node.name).await.unwrap().is_some()
    })
    .await;
    default_service_account(&client).await;

    // Discovery lists the group, legacy and aggregated.
    assert!(ok(&node, &["api-versions"]).contains("metrics.k8s.io/v1beta1"));
    let resources = ok(
        &node,
        &[
            "api-resources",
            "--api-group=metrics.k8s.io",
            "--no-headers",
        ],
    );
    let table = rows(&resources);
    assert!(
        table
            .iter()
            .any(|r| r.first().map(String::as_str) == Some("nodes")
                && r.last().map(String::as_str) == Some("NodeMetrics")),
        "{resources}"
    );
    assert!(
        table
            .iter()
            .any(|r| r.first().map(String::as_str) == Some("pods")
                && r.last().map(String::as_str) == Some("PodMetrics")),
        "{resources}"
    );
    // `kubectl get pods` still means the core group's pods.
    assert!(ok(&node, &["get", "pods", "-o", "name"]).is_empty());

    let burner = pod(
        "burner",
        json!([container("burn", "while true; do :; done")]),
    );
    let mut holder = pod(
        "holder",
        json!([
            container(
                "fill",
                "dd if=/dev/zero of=/mem/fill bs=1M count=32 && exec sleep 3600"
            ),
            container("idle", "exec sleep 3600"),
        ]),
    );
    holder["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "mem", "mountPath": "/mem"}]);
    holder["spec"]["volumes"] = json!([{"name": "mem", "emptyDir": {"medium": "Memory"}}]);
    for p in [&burner, &holder] {
        let out = node
            .server
            .kubectl_stdin(&["apply", "-f", "-"], &p.to_string());
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_running(&client, "burner").await;
    wait_running(&client, "holder").await;

    // The node, with its share of the machine.
    let rows = top(&node, &["top", "node"], &[&node.name]).await;
    let row = rows.iter().find(|r| r[0] == node.name).unwrap();
    assert!(millicores(&row[1]) > 0, "{row:?}");
    assert!(row[2].ends_with('%') && row[4].ends_with('%'), "{row:?}");
    assert!(mebibytes(&row[3]) > 0, "{row:?}");
    let named = top(&node, &["top", "node", &node.name], &[&node.name]).await;
    assert_eq!(named.len(), 1, "{named:?}");

    // The pods: a spinning cpu and 32 MiB held in memory.
    let rows = top(&node, &["top", "pod"], &["burner", "holder"]).await;
    let cell = |name: &str, i: usize| {
        rows.iter()
            .find(|r| r[0] == name)
            .map(|r| r[i].clone())
            .unwrap()
    };
    assert!(millicores(&cell("burner", 1)) > 100, "{rows:?}");
    assert!(mebibytes(&cell("holder", 2)) >= 30, "{rows:?}");
    // Per container.
    let rows = top(
        &node,
        &["top", "pod", "holder", "--containers"],
        &["fill", "idle"],
    )
    .await;
    let fill = rows.iter().find(|r| r[1] == "fill").unwrap();
    assert_eq!(fill[0], "holder");
    assert!(mebibytes(&fill[3]) >= 30, "{rows:?}");
    let idle = rows.iter().find(|r| r[1] == "idle").unwrap();
    assert!(mebibytes(&idle[3]) < 30, "{rows:?}");
    // A client asking for protobuf gets JSON it can read.
    top(
        &node,
        &["top", "pod", "--use-protocol-buffers"],
        &["burner", "holder"],
    )
    .await;
    // Selectors pick the pods.
    let rows = top(&node, &["top", "pod", "-l", "app=burner"], &["burner"]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let rows = top(&node, &["top", "pod", "-A", "--sort-by=cpu"], &["burner"]).await;
    assert_eq!(rows[0][1], "burner", "{rows:?}");

    api_objects(&node);
    agent_endpoints(&node).await;
}

/// The objects, tables and errors behind kubectl top.
fn api_objects(node: &RealNode) {
    let get =
        |path: &str| -> Value { serde_json::from_str(&ok(node, &["get", "--raw", path])).unwrap() };
    let m = get(&format!("/apis/metrics.k8s.io/v1beta1/nodes/{}", node.name));
    assert_eq!(m["kind"], "NodeMetrics");
    assert_eq!(m["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(m["metadata"]["labels"]["kubernetes.io/hostname"], node.name);
    let cpu = m["usage"]["cpu"].as_str().unwrap();
    assert!(
        cpu.ends_with('n') || cpu.ends_with('m') || cpu.ends_with('u'),
        "{m}"
    );
    assert!(m["window"].as_str().unwrap().ends_with('s'), "{m}");
    assert!(
        m["timestamp"]
            .as_str()
            .unwrap()
            .parse::<k8s_openapi::jiff::Timestamp>()
            .is_ok(),
        "{m}"
    );
    let list =
        get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dholder");
    assert_eq!(list["kind"], "PodMetricsList");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["metadata"]["name"], "holder");
    assert_eq!(items[0]["metadata"]["labels"]["app"], "holder");
    let names: Vec<&str> = items[0]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fill", "idle"]);
    let by_field = get("/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.name%3Dburner");
    assert_eq!(by_field["items"].as_array().unwrap().len(), 1, "{by_field}");

    // `kubectl get` prints metrics-server's table.
    let table = ok(node, &["get", "podmetrics.metrics.k8s.io", "holder"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CPU", "MEMORY", "WINDOW"], "{table}");

    // Errors, in metrics-server's words.
    let err = fails(
        node,
        &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"],
    );
    assert!(
        err.contains("nodemetrics.metrics.k8s.io \"nope\" not found"),
        "{err}"
    );
    let err = fails(node, &["top", "pod", "nope"]);
    assert!(
        err.contains("podmetrics.metrics.k8s.io \"default/nope\" not found"),
        "{err}"
    );
    let err = fails(node, &["top", "node", "nope"]);
    assert!(err.contains("not found"), "{err}");
    let out = node.server.kubectl_stdin(
        &[
            "--request-timeout=30s",
            "create",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/nodes",
            "-f",
            "-",
        ],
        r#"{"kind":"NodeMetrics","apiVersion":"metrics.k8s.io/v1beta1","metadata":{"name":"x"}}"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("MethodNotAllowed"),
        "{err}"
    );
    let err = fails(
        node,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/nodes?watch=true",
        ],
    );
    assert!(err.contains("MethodNotAllowed"), "{err}");
}

/// The agent's own endpoints, as metrics-server or Prometheus read them.
async fn agent_endpoints(node: &RealNode) {
    let cert = client_cert(node, &node.server.kubeconfig(), "top-admin");
    let get = |path: &str| -> String {
        let out = Command::new("curl")
            .args(["-sSfk", "--max-time", "10"])
            .args(&cert)
            .arg(format!("https://{}:10250{path}", node.node_ip))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let metrics = get("/metrics/resource");
    for want in [
        "container_cpu_usage_seconds_total{container=\"burn\",namespace=\"default\",pod=\"burner\"} ",
        "container_memory_working_set_bytes{container=\"fill\",namespace=\"default\",pod=\"holder\"} ",
        "container_start_time_seconds{container=\"idle\",namespace=\"default\",pod=\"holder\"} ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"burner\"} ",
        "pod_memory_working_set_bytes{namespace=\"default\",pod=\"holder\"} ",
        "\nnode_cpu_usage_seconds_total ",
        "\nnode_memory_working_set_bytes ",
        "\nscrape_error 0\n",
        "\nresource_scrape_error 0\n",
    ] {
        assert!(metrics.contains(want), "no {want:?} in {metrics}");
    }
    // The summary's rates come from the background samples (every 10 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let s: Value = serde_json::from_str(&get("/stats/summary")).unwrap();
        let has_rate = s["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["podRef"]["name"] == "burner" && p["cpu"]["usageNanoCores"].is_u64());
        if has_rate {
            break s;
        }
        assert!(Instant::now() < deadline, "no pod cpu rate in {s}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(summary["node"]["nodeName"], node.name);
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"].is_u64(),
        "{summary}"
    );
    assert!(
        summary["node"]["memory"]["workingSetBytes"].is_u64(),
        "{summary}"
    );
    assert!(summary["node"]["fs"]["capacityBytes"].is_u64(), "{summary}");
    let pods = summary["pods"].as_array().unwrap();
    let burner = pods
        .iter()
        .find(|p| p["podRef"]["name"] == "burner")
        .unwrap();
    assert_eq!(burner["podRef"]["namespace"], "default");
    assert!(
        burner["cpu"]["usageNanoCores"].as_u64().unwrap() > 100_000_000,
        "{burner}"
    );
    let holder = pods
        .iter()
        .find(|p| p["podRef"]["name"] == "holder")
        .unwrap();
    let fill = holder["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fill")
        .unwrap();
    assert!(
        fill["memory"]["workingSetBytes"].as_u64().unwrap() >= 30 << 20,
        "{fill}"
    );
    let small: Value =
        serde_json::from_str(&get("/stats/summary?only_cpu_and_memory=true")).unwrap();
    assert!(small["node"].get("fs").is_none(), "{small}");
}
