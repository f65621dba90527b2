//! The real node agent: pods as runc containers on a real node (its own
//! network namespace), their network, status, logs, volumes, probes,
//! restarts, graceful deletion and re-adoption after an agent crash. Needs
//! root, runc, the CNI plugins and busybox-static; skipped otherwise.

mod common;

use common::realnode::pods::{phase, ready_node, wait_pod};
use common::realnode::{missing, RealNode};
use common::{eventually, no_pods_left};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/busybox:latest";

fn skip() -> bool {
    if let Some(why) = missing() {
        eprintln!("skipping the real-agent tests: {why}");
        return true;
    }
    false
}

fn pod(name: &str, script: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
            "name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script],
        }]},
    })
}

/// A kubectl that runs in a busybox container (statically linked): the one
/// on PATH, or, when that is a dispatcher between versions, its v1.32.
fn in_pod_kubectl() -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .unwrap();
    let on_path = std::fs::canonicalize(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let versioned = on_path.with_file_name("kubectl.1.32");
    let chosen = if versioned.exists() {
        versioned
    } else {
        on_path
    };
    chosen.to_string_lossy().into_owned()
}

async fn create(pods: &Api<Pod>, v: serde_json::Value) -> Pod {
    pods.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap()
}

/// The first container's status (null before there is one).
fn first_status(p: &Pod) -> serde_json::Value {
    serde_json::to_value(
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first()),
    )
    .unwrap()
}

/// The container's log lines, without the CRI time, stream and tag.
fn log_lines(node: &RealNode, p: &Pod, container: &str, attempt: u32) -> Vec<String> {
    let dir = node.log_dir().join(format!(
        "default_{}_{}",
        p.metadata.name.as_deref().unwrap(),
        p.metadata.uid.as_deref().unwrap()
    ));
    std::fs::read_to_string(dir.join(container).join(format!("{attempt}.log")))
        .unwrap_or_default()
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string())
        .collect()
}

/// Deletes the pods and checks the node keeps no container or mount of
/// them.
async fn delete_all_leaving_nothing(node: &RealNode, pods: &Api<Pod>, names: &[&str]) {
    for name in names {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    no_pods_left("all pods gone", pods, 60).await;
    eventually("no runc containers", 10, async || {
        node.runc_containers().is_empty()
    })
    .await;
    assert_eq!(node.leftover_mounts(), Vec::<String>::new());
}

#[tokio::test]
async fn pods_run_reach_each_other_and_see_their_volumes() {
    if skip() {
        return;
    }
    let node = RealNode::start("node-a");
    let client = ready_node(&node).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // A Service whose variables the pods below get (enableServiceLinks).
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();

    // The node reports itself truthfully.
    let n: Node = Api::all(client.clone()).get("node-a").await.unwrap();
    let st = n.status.clone().unwrap();
    let info = st.node_info.clone().unwrap();
    assert!(
        info.container_runtime_version.starts_with("runc://"),
        "{info:?}"
    );
    assert_eq!(info.operating_system, "linux");
    let addr = &st.addresses.as_ref().unwrap()[0];
    assert_eq!(
        (addr.type_.as_str(), addr.address.as_str()),
        ("InternalIP", node.node_ip.as_str())
    );
    assert_eq!(st.capacity.as_ref().unwrap()["pods"].0, "110");

    // A web server: Running, Ready, with an IP from the node's range that
    // answers HTTP from the node and from another pod.
    create(&pods, pod("web", "mkdir -p /www && echo hello from $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www")).await;
    let web = wait_pod(&pods, "web", 60, "Running and Ready", |p| {
        phase(p) == "Running" && common::pod_ready(p)
    })
    .await;
    let ip = web.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let cidr = n.spec.as_ref().unwrap().pod_cidr.clone().unwrap();
    let prefix = cidr.rsplit_once('.').unwrap().0;
    assert!(ip.starts_with(&format!("{prefix}.")), "{ip} in {cidr}");
    // (Debian's busybox 1.35 wget crashes on -T: the time limit comes from
    // `timeout`.) The server may take a moment to listen after it started.
    let url = format!("http://{ip}:8080/");
    let mut got = String::new();
    for _ in 0..50 {
        let out = node.on_node(&["timeout", "5", "busybox", "wget", "-q", "-O", "-", &url]);
        got = String::from_utf8_lossy(&out.stdout).into_owned();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(got, "hello from web\n");
    create(&pods, {
        let mut p = pod(
            "client",
            &format!("timeout 10 wget -q -O - http://{ip}:8080/"),
        );
        p["spec"]["restartPolicy"] = json!("Never");
        p
    })
    .await;
    let client_pod = wait_pod(&pods, "client", 60, "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(log_lines(&node, &client_pod, "c", 0), ["hello from web"]);

    // Environment, configMap, secret, downward API and emptyDir volumes.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"mode": "fast"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "sec"}, "stringData": {"pw": "hunter2"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut vols = pod("vols", "echo env=$MODE/$POD_IP; echo $KUBERNETES_SERVICE_HOST/$WEB_SERVICE_HOST:$WEB_SERVICE_PORT; cat /cfg/mode /sec/pw /info/labels; echo; df /mem | tail -1 | awk '{print $2}'; while true; do echo $(cat /cfg/mode); sleep 1; done");
    vols["spec"]["containers"][0]["env"] = json!([
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]);
    vols["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"},
        {"name": "info", "mountPath": "/info"}, {"name": "mem", "mountPath": "/mem"},
    ]);
    vols["spec"]["volumes"] = json!([
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "sec"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
    ]);
    create(&pods, vols).await;
    let vols = wait_pod(&pods, "vols", 60, "Running", |p| phase(p) == "Running").await;
    let vols_ip = vols.status.as_ref().unwrap().pod_ip.clone().unwrap();
    eventually("the volume contents in the log", 20, async || {
        log_lines(&node, &vols, "c", 0).len() >= 6
    })
    .await;
    let lines = log_lines(&node, &vols, "c", 0);
    assert_eq!(lines[0], format!("env=fast/{vols_ip}"));
    let cluster_ip = |s: Service| s.spec.unwrap().cluster_ip.unwrap();
    let (kubernetes, web_svc) = (
        cluster_ip(services.get("kubernetes").await.unwrap()),
        cluster_ip(services.get("web").await.unwrap()),
    );
    assert_eq!(
        lines[1],
        format!("{kubernetes}/{web_svc}:80"),
        "service links"
    );
    assert_eq!(
        lines[2], "fasthunter2app=\"vols\"",
        "config map, secret, downward API"
    );
    assert_eq!(lines[3], "8192", "an 8Mi tmpfs");
    assert_eq!(lines[4], "fast");
    // A changed config map shows up in the mounted file in place.
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": "slow"}})),
    )
    .await
    .unwrap();
    eventually("the updated config map in the volume", 60, async || {
        log_lines(&node, &vols, "c", 0).iter().any(|l| l == "slow")
    })
    .await;

    // A projected service account token (TokenRequest, bound to the pod)
    // beside the namespace: the token authenticates as the pod's account.
    let mut tok = pod(
        "tok",
        "cat /tok/token; echo; cat /tok/namespace; echo; sleep 3600",
    );
    tok["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "tok", "mountPath": "/tok"}]);
    tok["spec"]["volumes"] = json!([{"name": "tok", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}]);
    create(&pods, tok).await;
    let tok = wait_pod(&pods, "tok", 60, "Running", |p| phase(p) == "Running").await;
    eventually("the token in the log", 20, async || {
        log_lines(&node, &tok, "c", 0).len() >= 2
    })
    .await;
    let lines = log_lines(&node, &tok, "c", 0);
    assert_eq!(lines[1], "default");
    let whoami = node.server.kubectl_as_token(
        &lines[0],
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:serviceaccount:default:default",
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );

    // Every pod gets the kube-api-access volume that in-cluster clients
    // read: kubectl inside a pod, told nothing but what that volume and
    // KUBERNETES_SERVICE_HOST say, checks the server against ca.crt and
    // acts as the pod's service account, bound to the pod and its node
    // (which may read pods once a binding says so).
    node.server.ok(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
        "-n",
        "default",
    ]);
    let mut inc = pod(
        "incluster",
        "/kubectl auth whoami -o json | tr -d '\\n '; echo; /kubectl get pod incluster -o name; sleep 3600",
    );
    inc["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "kubectl", "mountPath": "/kubectl", "readOnly": true}]);
    inc["spec"]["volumes"] =
        json!([{"name": "kubectl", "hostPath": {"path": in_pod_kubectl(), "type": "File"}}]);
    let inc = create(&pods, inc).await;
    let volumes = inc.spec.as_ref().unwrap().volumes.clone().unwrap();
    assert!(
        volumes[1].name.starts_with("kube-api-access-"),
        "{volumes:?}"
    );
    let inc = wait_pod(&pods, "incluster", 60, "Running", |p| phase(p) == "Running").await;
    eventually("kubectl's answers in the log", 30, async || {
        log_lines(&node, &inc, "c", 0).len() >= 2
    })
    .await;
    let lines = log_lines(&node, &inc, "c", 0);
    let review: serde_json::Value = serde_json::from_str(&lines[0]).expect(&lines[0]);
    let info = &review["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:default");
    let extra = &info["extra"];
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        json!(["incluster"])
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        json!([node.name])
    );
    assert_eq!(lines[1], "pod/incluster");

    // An exit code, for good under restartPolicy Never.
    let mut fail = pod("fail", "echo bye > /dev/termination-log; exit 3");
    fail["spec"]["restartPolicy"] = json!("Never");
    create(&pods, fail).await;
    let fail = wait_pod(&pods, "fail", 60, "Failed", |p| phase(p) == "Failed").await;
    let term = first_status(&fail)["state"]["terminated"].clone();
    assert_eq!(
        (
            term["exitCode"].as_i64(),
            term["reason"].as_str(),
            term["message"].as_str()
        ),
        (Some(3), Some("Error"), Some("bye\n"))
    );

    // An image the node does not have.
    let mut missing = pod("missing", "true");
    missing["spec"]["containers"][0]["image"] = json!("localhost/no-such-image:1");
    create(&pods, missing).await;
    // (A failed pull shows ErrImagePull, then ImagePullBackOff until the next try.)
    let m = wait_pod(
        &pods,
        "missing",
        60,
        "ErrImagePull or ImagePullBackOff",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs[0]
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        .is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
                })
        },
    )
    .await;
    assert_eq!(phase(&m), "Pending");

    // Graceful deletion: SIGTERM reaches the container, the pod goes when it exits.
    let shared = node.data_dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mut term = pod(
        "term",
        "trap 'echo got TERM > /shared/term; exit 0' TERM; while true; do sleep 0.2; done",
    );
    term["spec"]["terminationGracePeriodSeconds"] = json!(30);
    term["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "shared", "mountPath": "/shared"}]);
    term["spec"]["volumes"] =
        json!([{"name": "shared", "hostPath": {"path": shared, "type": "Directory"}}]);
    create(&pods, term).await;
    wait_pod(&pods, "term", 60, "Running", |p| phase(p) == "Running").await;
    let started = Instant::now();
    pods.delete("term", &DeleteParams::default()).await.unwrap();
    eventually("the pod gone after SIGTERM", 30, async || {
        pods.get_opt("term").await.unwrap().is_none()
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "SIGTERM ended it well within its grace period"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join("term")).unwrap(),
        "got TERM\n"
    );

    // Deleting everything leaves no container, mount or sandbox behind.
    delete_all_leaving_nothing(
        &node,
        &pods,
        &[
            "web",
            "client",
            "vols",
            "tok",
            "incluster",
            "fail",
            "missing",
        ],
    )
    .await;
    let sandboxes = std::fs::read_dir(node.data_dir.path().join("agent/pods"))
        .unwrap()
        .count();
    assert_eq!(sandboxes, 0, "no sandbox directories left");
}

#[tokio::test]
async fn restarts_back_off_and_a_restarted_agent_adopts_its_containers() {
    if skip() {
        return;
    }
    let mut node = RealNode::start("node-b");
    let client = ready_node(&node).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // A crashing container restarts with growing back-off: CrashLoopBackOff.
    create(&pods, pod("crash", "echo run; exit 1")).await;
    // An emptyDir filled past its sizeLimit gets its pod evicted.
    let mut fill = pod(
        "fill",
        "dd if=/dev/zero of=/scratch/big bs=1024 count=4096; sleep 3600",
    );
    fill["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "scratch", "mountPath": "/scratch"}]);
    fill["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}]);
    create(&pods, fill).await;
    let crash = wait_pod(
        &pods,
        "crash",
        60,
        "CrashLoopBackOff after two restarts",
        |p| {
            let s = first_status(p);
            s["restartCount"].as_i64() >= Some(2)
                && s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        },
    )
    .await;
    let s = first_status(&crash);
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
    let fill = wait_pod(&pods, "fill", 60, "evicted", |p| {
        phase(p) == "Failed" && first_status(p)["state"]["terminated"].is_object()
    })
    .await;
    let status = fill.status.as_ref().unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        status.message.as_deref(),
        Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
    );
    assert!(
        s["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off "),
        "{s}"
    );

    // A failing liveness probe restarts the container.
    let mut live = pod("live", "sleep 3600");
    live["spec"]["terminationGracePeriodSeconds"] = json!(1);
    live["spec"]["containers"][0]["livenessProbe"] = json!({"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2});
    live["spec"]["containers"][0]["readinessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
    create(&pods, live).await;
    wait_pod(&pods, "live", 60, "a liveness restart", |p| {
        first_status(p)["restartCount"].as_i64() >= Some(1)
    })
    .await;

    // A memory limit is enforced: an overrun is OOMKilled.
    let mut oom = pod("oom", "dd if=/dev/zero of=/dev/null bs=64M count=1");
    oom["spec"]["restartPolicy"] = json!("Never");
    oom["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "16Mi"}});
    create(&pods, oom).await;
    let oom = wait_pod(&pods, "oom", 60, "Failed", |p| phase(p) == "Failed").await;
    assert_eq!(
        first_status(&oom)["state"]["terminated"]["reason"],
        "OOMKilled"
    );

    // Init containers run in order, each to success, before the containers;
    // postStart runs before the container counts as started, preStop before SIGTERM.
    let shared = node.data_dir.path().join("shared-b");
    std::fs::create_dir_all(&shared).unwrap();
    // (postStart runs beside the entrypoint, as upstream: the script waits for it.)
    let mut init = pod("init", "cat /work/order; until [ -f /work/poststart ]; do sleep 0.1; done; cat /work/poststart; sleep 3600");
    init["spec"]["initContainers"] = json!([
        {"name": "one", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "echo one >> /work/order"],
         "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        {"name": "two", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "echo two >> /work/order"],
         "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
    ]);
    init["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "work", "mountPath": "/work"}, {"name": "shared", "mountPath": "/shared"}]);
    init["spec"]["containers"][0]["lifecycle"] = json!({
        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /work/poststart"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /shared/prestop"]}},
    });
    init["spec"]["volumes"] = json!([{"name": "work", "emptyDir": {}},
        {"name": "shared", "hostPath": {"path": shared, "type": "Directory"}}]);
    create(&pods, init).await;
    let init = wait_pod(&pods, "init", 60, "Running", |p| phase(p) == "Running").await;
    let inits = init
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert!(inits.iter().all(|s| s
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .reason
        .as_deref()
        == Some("Completed")));
    eventually("the main container's output", 20, async || {
        log_lines(&node, &init, "c", 0).len() >= 3
    })
    .await;
    assert_eq!(log_lines(&node, &init, "c", 0), ["one", "two", "started"]);
    pods.delete("init", &DeleteParams::default()).await.unwrap();
    eventually("the init pod gone", 30, async || {
        pods.get_opt("init").await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(shared.join("prestop")).unwrap(),
        "stopping\n"
    );

    // kill -9 of the agent: the container keeps running; a new agent adopts
    // it (same container, no restart, no duplicate).
    create(&pods, pod("steady", "while true; do sleep 1; done")).await;
    let before = wait_pod(&pods, "steady", 60, "Running and Ready", |p| {
        phase(p) == "Running" && common::pod_ready(p)
    })
    .await;
    let id = first_status(&before)["containerID"].clone();
    let containers = node.runc_containers().len();
    node.kill_agent();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        node.runc_containers().len(),
        containers,
        "containers outlive the agent"
    );
    node.start_agent();
    // The new agent writes the status afresh; wait for it to have looked.
    eventually("the new agent's lease", 30, async || {
        node.agent_log().matches("node registered").count() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pods.get("steady").await.unwrap();
    assert_eq!(first_status(&after)["containerID"], id);
    assert_eq!(first_status(&after)["restartCount"], 0);
    assert_eq!(
        node.runc_containers().len(),
        containers,
        "no duplicate started"
    );
    assert!(node.agent_log().contains("re-adopted container"));

    delete_all_leaving_nothing(&node, &pods, &["crash", "fill", "live", "oom", "steady"]).await;
}
