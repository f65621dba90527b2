//! `skiff up` as a user runs it, inside a network namespace of its own: a
//! Ready node that is also the control plane, the kubeconfig merged as
//! context `skiff`, a pod from the imported test image; stopped and run
//! again, the objects are there and the pod's container was kept, not
//! started twice. Needs root, runc, the CNI plugins and busybox-static.

mod common;

use common::realnode::{busybox_image, clean_node_state, missing, runc_containers, NodeNet};
use common::Spawned;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// One `skiff up` run in the namespace, logging to `<dir>/up.log`.
fn up(net: &NodeNet, dir: &Path, home: &Path) -> Spawned {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("up.log"))
        .unwrap();
    let child = net
        .command(env!("CARGO_BIN_EXE_skiff"))
        .args(["up", "--node-name", "up-node", "--data-dir"])
        .arg(dir.join("data"))
        .arg(format!(
            "--agent-arg=--pod-log-dir={}",
            dir.join("logs").display()
        ))
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start skiff up");
    Spawned(child)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
}

/// Waits for the `n`th "ready" line of the log.
fn wait_ready(dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while log(dir).matches("skiff up: ready").count() < n {
        assert!(
            Instant::now() < deadline,
            "skiff up not ready: {}",
            log(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// kubectl inside the namespace with the user's (merged) kubeconfig.
fn kubectl(net: &NodeNet, home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = net.command("timeout");
    cmd.args(["-k", "5", "120", "kubectl"])
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .args(args);
    common::output_with_stdin(cmd, stdin)
}

fn ok(net: &NodeNet, home: &Path, args: &[&str]) -> String {
    let out = kubectl(net, home, args, None);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn eventually_ok(net: &NodeNet, home: &Path, args: &[&str], want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = kubectl(net, home, args, None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} never showed {want:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Cleans up after the test, also when it fails: the process first, then
/// what its node left, then (dropping `net`) the namespace.
struct Cleanup {
    up: Option<Spawned>,
    data_dir: PathBuf,
    net: NodeNet,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.up = None;
        clean_node_state(&self.data_dir);
    }
}

/// kubectl arguments for the test pod's phase, and its container's id.
const STEADY_PHASE: &[&str] = &["get", "pod", "steady", "-o", "jsonpath={.status.phase}"];
const STEADY_CONTAINER: &[&str] = &[
    "get",
    "pod",
    "steady",
    "-o",
    "jsonpath={.status.containerStatuses[0].containerID}",
];

const POD: &str = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "steady"},
  "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c",
    "image": "localhost/busybox:latest", "imagePullPolicy": "IfNotPresent",
    "command": ["sleep", "3600"]}]}}"#;

#[test]
fn up_runs_a_node_and_comes_back_after_a_stop() {
    if let Some(why) = missing() {
        eprintln!("skipping the skiff up test: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    // The test image where the node imports tarballs from (as scripts/up does).
    let images = dir.join("data/agent/images");
    std::fs::create_dir_all(&images).unwrap();
    busybox_image(&images.join("busybox.tar"));
    let net = NodeNet::create();
    let mut c = Cleanup {
        up: Some(up(&net, dir, &home)),
        data_dir: dir.join("data"),
        net,
    };
    let net = &c.net;
    wait_ready(dir, 1);
    let text = log(dir);
    assert!(text.contains("node up-node Ready"), "{text}");
    // The merged kubeconfig is the current context, and it works.
    assert_eq!(
        ok(net, &home, &["config", "current-context"]).trim(),
        "skiff"
    );
    let nodes = ok(net, &home, &["get", "nodes"]);
    assert!(
        nodes.contains("up-node") && nodes.contains(" Ready "),
        "{nodes}"
    );
    assert!(nodes.contains("control-plane"), "{nodes}");
    let out = kubectl(net, &home, &["apply", "-f", "-"], Some(POD));
    assert!(out.status.success(), "{out:?}");
    eventually_ok(net, &home, STEADY_PHASE, "Running");
    let id = ok(net, &home, STEADY_CONTAINER);
    let containers = runc_containers(&c.data_dir).len();

    // Stopped (as ctrl-c does) and run again: the container kept running
    // and is adopted; nothing was lost.
    stop(&mut c.up);
    assert_eq!(runc_containers(&c.data_dir).len(), containers);
    c.up = Some(up(net, dir, &home));
    wait_ready(dir, 2);
    eventually_ok(net, &home, STEADY_PHASE, "Running");
    let again = ok(net, &home, STEADY_CONTAINER);
    assert_eq!(again, id, "the same container");
    assert_eq!(
        runc_containers(&c.data_dir).len(),
        containers,
        "no duplicate"
    );

    // A reboot: containers, mounts, cgroups and the network namespace are
    // gone, the data dir stays. Run again, the pod runs again in a new
    // sandbox (its old address released first).
    stop(&mut c.up);
    clean_node_state(&c.data_dir);
    c.net = NodeNet::create();
    let net = &c.net;
    c.up = Some(up(net, dir, &home));
    wait_ready(dir, 3);
    eventually_ok(
        net,
        &home,
        &[
            "get",
            "pod",
            "steady",
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].restartCount}",
        ],
        "Running 1",
    );
    assert!(log(dir).contains("sandbox lost"), "{}", log(dir));
    assert!(!log(dir).contains("duplicate allocation"), "{}", log(dir));
    ok(net, &home, &["delete", "pod", "steady", "--wait=false"]);
}

/// SIGINT, as ctrl-c; it must exit cleanly.
fn stop(up: &mut Option<Spawned>) {
    let mut up = up.take().unwrap();
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(up.0.id() as i32, libc::SIGINT) };
    let status = up.0.wait().unwrap();
    assert!(
        status.success(),
        "skiff up exits cleanly on SIGINT: {status}"
    );
}
