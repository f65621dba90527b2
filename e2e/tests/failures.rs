//! Failures on a 3-node lab: a node lost (its pods come back elsewhere and
//! the Deployment is Available again), an agent restarted (its containers
//! keep running, none duplicated), the server restarted (nothing lost, a
//! client's watch resumes).

use skiff_e2e::{eventually, lab_for, name_of, pod_ready, Lab};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// 3 replicas spread over the nodes, tolerating an unreachable node for 5 s
/// instead of the default 300.
const SPREAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
        labelSelector: {matchLabels: {app: spread}}
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: main
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, "3600"]
"#;

fn node_ready(lab: &Lab, node: &str) -> Option<String> {
    let n = lab.get_json(&["node", node]);
    n["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// Live (not terminating) pods by name → node.
fn placed(lab: &Lab, selector: &str) -> BTreeMap<String, String> {
    lab.pods(selector)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                name_of(p),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_lost_node_s_pods_come_back_on_the_others() {
    let Some(lab) = lab_for("the node-loss e2e test") else {
        return;
    };
    lab.apply(SPREAD);
    lab.kubectl(&["rollout", "status", "deployment/spread", "--timeout=120s"]);
    let before = placed(&lab, "app=spread");
    let victim = before
        .values()
        .find(|n| *n != "node-1")
        .cloned()
        .expect("a pod off node-1");

    lab.skiff(&["lab", "node", "stop", &victim]);
    // The default grace period (40 s) without heartbeats, then Unknown.
    eventually(&format!("{victim} not Ready"), 120, || {
        node_ready(&lab, &victim).as_deref() != Some("True")
    });
    eventually(&format!("{victim} tainted unreachable"), 30, || {
        lab.get_json(&["node", &victim])["spec"]["taints"]
            .to_string()
            .contains("node.kubernetes.io/unreachable")
    });
    eventually("3 pods Ready on the remaining nodes", 120, || {
        let live = lab.ready_pods("app=spread");
        live.len() == 3
            && live
                .iter()
                .all(|p| p["spec"]["nodeName"] != victim.as_str())
    });
    lab.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/spread",
        "--timeout=60s",
    ]);

    // Back: Ready again, and the pods left behind on it are gone.
    lab.skiff(&["lab", "node", "start", &victim]);
    eventually(&format!("{victim} Ready again"), 120, || {
        node_ready(&lab, &victim).as_deref() == Some("True")
    });
    eventually("only 3 pods, none left on the lost node", 120, || {
        let all = lab.pods("app=spread");
        all.len() == 3 && all.iter().all(pod_ready)
    });
}

const PINNED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: pinned}
spec:
  replicas: 2
  selector: {matchLabels: {app: pinned}}
  template:
    metadata: {labels: {app: pinned}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-2}
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sleep, "3600"]
"#;

/// Container ids and restart counts of the pods, by pod name.
fn containers(lab: &Lab, selector: &str) -> BTreeMap<String, (String, u64)> {
    lab.pods(selector)
        .iter()
        .map(|p| {
            let s = &p["status"]["containerStatuses"][0];
            (
                name_of(p),
                (
                    s["containerID"].as_str().unwrap_or("").to_string(),
                    s["restartCount"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// What runc runs on one lab node (its agent's runc root).
fn runc_list(lab: &Lab, node: &str) -> Vec<String> {
    let root: PathBuf = lab.state_dir().join(node).join("agent/runc");
    let out = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_restarted_agent_keeps_its_containers_and_a_restarted_server_loses_nothing() {
    let Some(lab) = lab_for("the restart e2e test") else {
        return;
    };
    lab.apply(PINNED);
    lab.kubectl(&["rollout", "status", "deployment/pinned", "--timeout=120s"]);
    let before = containers(&lab, "app=pinned");
    let running = runc_list(&lab, "node-2");
    assert!(running.len() >= 2, "{running:?}");

    // Agent restart: same containers, no restarts, no duplicates.
    lab.skiff(&["lab", "node", "restart", "node-2"]);
    // Long enough for the new agent to sync every pod at least once.
    std::thread::sleep(std::time::Duration::from_secs(5));
    eventually("node-2 Ready after its agent restarted", 60, || {
        node_ready(&lab, "node-2").as_deref() == Some("True")
    });
    eventually("pinned pods Ready", 60, || {
        lab.ready_pods("app=pinned").len() == 2
    });
    assert_eq!(containers(&lab, "app=pinned"), before, "containers kept");
    assert_eq!(runc_list(&lab, "node-2"), running, "no container added");

    // Server restart with a client waiting on a watch: kubectl wait for a
    // deletion that only happens after the server is back.
    lab.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {a: b}\n");
    let kept = lab.get_json(&["configmap", "keep"]);
    let victim = name_of(&lab.ready_pods("app=pinned")[0]);
    let wait = lab
        .kubectl_command(&[
            "wait",
            "--for=delete",
            &format!("pod/{victim}"),
            "--timeout=120s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    lab.skiff(&["lab", "server", "restart"]);
    let again = lab.get_json(&["configmap", "keep"]);
    assert_eq!(again["metadata"]["uid"], kept["metadata"]["uid"]);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        kept["metadata"]["resourceVersion"]
    );
    assert_eq!(containers(&lab, "app=pinned"), before, "pods untouched");
    lab.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    let out = wait.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl wait across the restart: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("a replacement pod Ready", 60, || {
        let live = lab.ready_pods("app=pinned");
        live.len() == 2 && live.iter().all(|p| name_of(p) != victim)
    });
}
