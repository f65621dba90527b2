//! `skiff lab`: two nodes, each its own network namespace on the lab's
//! bridge, joined with the token; a NodePort Service answers on both nodes
//! from pods on both; a node stopped loses its containers and comes back;
//! `lab down` leaves no process, namespace, link, mount or state behind.
//! Requests go only to the lab's own addresses. Needs root, runc, the CNI
//! plugins and busybox-static.

mod common;

use common::realnode::missing;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Lab {
    name: String,
    state: PathBuf,
    home: PathBuf,
    kubeconfig: PathBuf,
}

impl Lab {
    fn skiff(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .args(["--name", &self.name, "--state-dir"])
            .arg(&self.state)
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run skiff lab")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.skiff(args);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "skiff {args:?}: {text}");
        text
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = common::kubectl_with(&self.kubeconfig, &self.state.join("cache"), args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `lab down` also when the test fails half-way.
impl Drop for Lab {
    fn drop(&mut self) {
        if self.state.join(&self.name).join("lab.json").exists() {
            let _ = self.skiff(&["lab", "down"]);
        }
    }
}

fn eventually(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(url: &str) -> String {
    let out = Command::new("timeout")
        .args(["5", "busybox", "wget", "-q", "-O", "-", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 4
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "hello from $(hostname)" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
"#;

fn links_named(prefix: &str) -> usize {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|n| n.starts_with(prefix))
        })
        .count()
}

#[test]
fn a_two_node_lab_serves_loses_a_node_and_goes_away() {
    if let Some(why) = missing() {
        eprintln!("skipping the lab test: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("t{}", std::process::id() % 100_000);
    let lab = Lab {
        name: name.clone(),
        state: tmp.path().join("labs"),
        home: tmp.path().join("home"),
        kubeconfig: tmp.path().join("lab.kubeconfig"),
    };
    let printed = lab.ok(&[
        "lab",
        "up",
        "--nodes",
        "2",
        "--write-kubeconfig",
        &tmp.path().join("lab.kubeconfig").to_string_lossy(),
    ]);
    assert!(printed.contains("node-2 Ready"), "{printed}");
    // The test image every node gets without --images.
    assert!(
        printed.contains("test image localhost/busybox:latest"),
        "{printed}"
    );
    let merged = lab.home.join(".kube/config");
    assert!(std::fs::read_to_string(&merged)
        .unwrap()
        .contains("skiff-lab"));
    let nodes = lab.kubectl(
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.addresses[0].address}",
        ],
        None,
    );
    let ips: Vec<String> = nodes.split_whitespace().map(str::to_string).collect();
    assert_eq!(ips.len(), 2, "{nodes}");

    // Pods on both nodes behind a NodePort answering on both nodes.
    lab.kubectl(&["apply", "-f", "-"], Some(APP));
    eventually("4 pods Running", 60, || {
        lab.kubectl(
            &[
                "get",
                "pods",
                "-l",
                "app=hello",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
            None,
        )
        .matches("Running")
        .count()
            == 4
    });
    let port = lab.kubectl(
        &[
            "get",
            "svc",
            "hello",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
        None,
    );
    for ip in &ips {
        let url = format!("http://{ip}:{port}/");
        let mut seen = std::collections::BTreeSet::new();
        eventually(
            &format!("replies from pods on both nodes via {ip}"),
            60,
            || {
                for _ in 0..10 {
                    let r = get(&url);
                    if r.starts_with("hello from ") {
                        seen.insert(r);
                    }
                }
                seen.len() >= 3
            },
        );
    }

    // A node cut off: its containers are gone; started again, it is back.
    let node2 = lab.state.join(&name).join("node-2");
    lab.ok(&["lab", "node", "stop", "node-2"]);
    let runc = |dir: &Path| {
        let out = Command::new("runc")
            .arg("--root")
            .arg(dir.join("agent/runc"))
            .args(["list", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(runc(&node2), 0, "no container left on the stopped node");
    lab.ok(&["lab", "node", "start", "node-2"]);
    eventually("node-2's pods Running again", 60, || {
        runc(&node2) >= 1
            && lab
                .kubectl(
                    &["get", "pods", "-o", "jsonpath={.items[*].status.phase}"],
                    None,
                )
                .matches("Running")
                .count()
                == 4
    });

    // Down: nothing left.
    lab.ok(&["lab", "down"]);
    assert!(!lab.state.join(&name).exists());
    assert_eq!(links_named(&format!("skl-{name}")), 0, "the bridge is gone");
    assert_eq!(links_named(&format!("skl{name}")), 0, "the veths are gone");
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&format!("skl-{name}-")),
        "namespaces gone"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*lab.state.to_string_lossy()),
        "mounts gone"
    );
    let state = lab.state.to_string_lossy().into_owned();
    let alive = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&state))
        })
        .count();
    assert_eq!(alive, 0, "no process of the lab left");
}
