//! Streaming between kubectl, the API server and a real node agent:
//! `kubectl logs` (every flag), `exec` (exit codes, stdin, a terminal),
//! `cp`, `attach`, `port-forward` and `debug` (ephemeral containers), over
//! kubectl's WebSocket protocols and its SPDY fallbacks; and the agent's
//! port refusing strangers. Needs root,
//! runc, the CNI plugins, busybox-static, kubectl and util-linux `script`;
//! skipped otherwise.

mod common;

use common::realnode::pods::{phase, ready_node, wait_pod, waiting_reason};
use common::realnode::{client_cert, missing, RealNode};
use common::{eventually, free_port, Spawned};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/busybox:latest";

fn skip() -> bool {
    let why = missing().or_else(|| (!common::have_kubectl()).then(|| "needs kubectl".to_string()));
    if let Some(why) = why {
        eprintln!("skipping the streaming tests: {why}");
        return true;
    }
    false
}

/// kubectl against the node's server, with extra environment, killed if it
/// runs longer than `secs`.
fn kubectl(
    node: &RealNode,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
    secs: u64,
) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", node.server.kubeconfig())
        .arg("--cache-dir")
        .arg(node.server.dir.path().join("kubectl-cache"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_bounded(cmd, stdin, secs)
}

fn run_bounded(mut cmd: Command, stdin: Option<&str>, secs: u64) -> Output {
    let mut child = cmd.spawn().expect("start");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = w.write_all(input.as_bytes());
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!(
                "{cmd:?} did not finish within {secs}s ({status}); stdout: {}; stderr: {}",
                String::from_utf8_lossy(&o.join().unwrap()),
                String::from_utf8_lossy(&e.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

fn ok(node: &RealNode, args: &[&str]) -> String {
    let out = kubectl(node, args, None, &[], 60);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(node: &RealNode, args: &[&str]) -> String {
    let out = kubectl(node, args, None, &[], 60);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn apply(node: &RealNode, doc: serde_json::Value) {
    let out = kubectl(node, &["apply", "-f", "-"], Some(&doc.to_string()), &[], 60);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pod(name: &str, containers: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": containers},
    })
}

fn container(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "Never", "command": ["sh", "-c", script]})
}

fn running(p: &Pod) -> bool {
    phase(p) == "Running" && common::pod_ready(p)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

#[tokio::test]
async fn logs_with_every_flag() {
    if skip() {
        return;
    }
    let node = RealNode::start("stream-logs");
    let pods: Api<Pod> = Api::namespaced(ready_node(&node).await, "default");

    apply(
        &node,
        pod(
            "two",
            json!([
                container("a", "echo a-one; echo a-two; exec sleep 3600"),
                container("b", "echo b-one; exec sleep 3600"),
            ]),
        ),
    );
    // Counts its runs in an emptyDir: run 1 fails, run 2 stays up.
    let mut crash = pod(
        "crash",
        json!([container(
            "c",
            "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo run $n; \
             if [ $n -ge 2 ]; then exec sleep 3600; fi; exit 1"
        )]),
    );
    crash["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/data"}]);
    crash["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    apply(&node, crash);
    let mut waiting = pod("waiting", json!([container("c", "true")]));
    waiting["spec"]["containers"][0]["image"] = json!("localhost/not-here:latest");
    apply(&node, waiting);
    let mut pending = pod("pending", json!([container("c", "true")]));
    pending["spec"]["nodeSelector"] = json!({"no-such": "node"});
    apply(&node, pending);

    wait_pod(&pods, "two", 90, "Running", running).await;
    let two = |args: &[&str]| {
        let mut a = vec!["logs", "two"];
        a.extend_from_slice(args);
        ok(&node, &a)
    };
    eventually("two's logs", 20, async || two(&["-c", "b"]) == "b-one\n").await;
    assert_eq!(two(&["-c", "a"]), "a-one\na-two\n");
    // Without -c kubectl picks the first container.
    assert_eq!(two(&[]), "a-one\na-two\n");
    assert_eq!(two(&["-c", "a", "--tail=1"]), "a-two\n");
    assert_eq!(two(&["-c", "a", "--tail=0"]), "");
    assert_eq!(two(&["-c", "a", "--limit-bytes=3"]), "a-o");
    assert_eq!(two(&["-c", "a", "--since=1h"]), "a-one\na-two\n");
    let stamped = two(&["-c", "a", "--timestamps"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    for (line, text) in lines.iter().zip(["a-one", "a-two"]) {
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, text);
        assert!(
            time.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
            "{time}"
        );
    }
    let all = two(&["--all-containers"]);
    for l in ["a-one", "a-two", "b-one"] {
        assert!(all.contains(l), "{all}");
    }
    let prefixed = two(&["--all-containers", "--prefix"]);
    assert!(prefixed.contains("[pod/two/b] b-one"), "{prefixed}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(two(&["-c", "a", "--since=1s"]), "");
    assert_eq!(
        two(&["-c", "a", "--since-time=2000-01-01T00:00:00Z"]),
        "a-one\na-two\n"
    );

    // Errors as upstream words them.
    let e = fails(&node, &["logs", "two", "-c", "nope"]);
    assert!(e.contains("container nope is not valid for pod two"), "{e}");
    let e = fails(&node, &["logs", "two", "-c", "a", "--previous"]);
    assert!(
        e.contains("previous terminated container \"a\" in pod \"two\" not found"),
        "{e}"
    );
    let e = fails(&node, &["logs", "nothere"]);
    assert!(e.contains("pods \"nothere\" not found"), "{e}");
    wait_pod(&pods, "waiting", 90, "the image error", |p| {
        waiting_reason(p) == "ErrImageNeverPull"
    })
    .await;
    let e = fails(&node, &["logs", "waiting"]);
    assert!(
        e.contains("BadRequest")
            && e.contains(
                "container \"c\" in pod \"waiting\" is waiting to start: ErrImageNeverPull"
            ),
        "{e}"
    );
    // Not scheduled: nothing to show, no error (as upstream).
    assert_eq!(ok(&node, &["logs", "pending"]), "");

    // --previous after a restart.
    wait_pod(&pods, "crash", 90, "a restart", |p| {
        running(p) && restarts(p) >= 1
    })
    .await;
    eventually("the second run's log", 20, async || {
        ok(&node, &["logs", "crash"]) == "run 2\n"
    })
    .await;
    assert_eq!(ok(&node, &["logs", "crash", "--previous"]), "run 1\n");
    assert_eq!(
        ok(&node, &["logs", "crash", "-p", "--timestamps"])
            .split_once(' ')
            .unwrap()
            .1,
        "run 1\n"
    );

    // -f follows new lines and ends when the container ends.
    let mut counter = pod(
        "counter",
        json!([container(
            "c",
            "for i in 1 2 3 4; do echo tick $i; sleep 1; done"
        )]),
    );
    counter["spec"]["restartPolicy"] = json!("Never");
    apply(&node, counter);
    wait_pod(&pods, "counter", 90, "Running", |p| phase(p) == "Running").await;
    let started = Instant::now();
    let out = kubectl(&node, &["logs", "-f", "counter"], None, &[], 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick 1\ntick 2\ntick 3\ntick 4\n"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it followed the running container"
    );
    wait_pod(&pods, "counter", 90, "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(
        ok(&node, &["logs", "counter", "--tail=2"]),
        "tick 3\ntick 4\n"
    );
    // -f of a finished container prints and returns at once.
    assert_eq!(
        ok(&node, &["logs", "-f", "counter", "--tail=1"]),
        "tick 4\n"
    );

    // Through workloads: a Deployment and a Job.
    apply(
        &node,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [container("c", "echo hello from deploy; exec sleep 3600")]}}},
        }),
    );
    eventually("the deployment's logs", 90, async || {
        kubectl(&node, &["logs", "deploy/web"], None, &[], 30).stdout == b"hello from deploy\n"
    })
    .await;
    // Followers hold none of the agent's pooled threads for blocking work:
    // with more `logs -f` open than that pool has threads, a new pod (the
    // Job's) still gets its bundle and mounts and runs.
    let _followers: Vec<Spawned> = (0..20)
        .map(|_| {
            Spawned(
                Command::new("kubectl")
                    .env("KUBECONFIG", node.server.kubeconfig())
                    .args(["logs", "-f", "deploy/web"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("kubectl logs -f"),
            )
        })
        .collect();
    // Time for them to connect; the Job must start with them all open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    apply(
        &node,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [container("c", "echo job done")]}}},
        }),
    );
    eventually("the job's logs", 90, async || {
        kubectl(&node, &["logs", "job/once"], None, &[], 30).stdout == b"job done\n"
    })
    .await;
}

#[tokio::test]
async fn exec_cp_attach_port_forward() {
    if skip() {
        return;
    }
    let node = RealNode::start("stream-exec");
    let pods: Api<Pod> = Api::namespaced(ready_node(&node).await, "default");
    apply(
        &node,
        pod(
            "web",
            json!([container(
                "c",
                "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 8080 -h /www"
            )]),
        ),
    );
    let mut talk = pod(
        "talk",
        json!([container(
            "c",
            "while read line; do echo got $line; done; echo bye"
        )]),
    );
    talk["spec"]["restartPolicy"] = json!("Never");
    talk["spec"]["containers"][0]["stdin"] = json!(true);
    talk["spec"]["containers"][0]["stdinOnce"] = json!(true);
    apply(&node, talk);
    // A container under a terminal (`kubectl run -it` makes these): it
    // waits for a line, then shows its terminal and that terminal's size.
    let mut term = pod(
        "term",
        json!([container("c", "read x; tty; stty size; echo typed $x")]),
    );
    term["spec"]["restartPolicy"] = json!("Never");
    term["spec"]["containers"][0]["stdin"] = json!(true);
    term["spec"]["containers"][0]["tty"] = json!(true);
    apply(&node, term);
    wait_pod(&pods, "web", 90, "Running", running).await;

    // exec: output, stderr apart, the exit code.
    let out = kubectl(
        &node,
        &["exec", "web", "--", "sh", "-c", "echo hi; exit 3"],
        None,
        &[],
        60,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"));
    let out = kubectl(
        &node,
        &["exec", "web", "--", "sh", "-c", "echo out; echo err >&2"],
        None,
        &[],
        60,
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = kubectl(
        &node,
        &["exec", "web", "--", "no-such-binary"],
        None,
        &[],
        60,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-binary"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // exec -i: stdin reaches the command and its end is the command's EOF.
    let out = kubectl(
        &node,
        &["exec", "-i", "web", "--", "sh", "-c", "cat; echo done"],
        Some("piped input\n"),
        &[],
        60,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped input\ndone\n");
    // The SPDY fallback, as kubectl uses it when WebSockets are turned off.
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = kubectl(
        &node,
        &["exec", "-i", "web", "--", "sh", "-c", "cat; exit 5"],
        Some("over spdy\n"),
        &spdy,
        60,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over spdy\n");
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // exec -it under a pseudo-terminal: the command has a terminal of the
    // client's size, and input typed reaches it; over WebSocket and SPDY
    // (whose resize messages travel on a stream of their own).
    for websockets in ["true", "false"] {
        let out = in_terminal(
            &node,
            "77",
            "22",
            &format!("KUBECTL_REMOTE_COMMAND_WEBSOCKETS={websockets}"),
            "exec -it web -- sh -c 'tty; stty size; read x; echo typed $x; exit 4'",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("/dev/pts/"), "{websockets}: {text}");
        assert!(text.contains("22 77"), "{websockets}: {text}");
        assert!(text.contains("typed hello"), "{websockets}: {text}");
        assert_eq!(out.status.code(), Some(4), "{websockets}: {text}");
    }

    // cp in and out (tar through exec).
    let local = node.data_dir.path().join("to-pod.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    ok(&node, &["cp", local.to_str().unwrap(), "web:/tmp/in.txt"]);
    assert_eq!(
        ok(&node, &["exec", "web", "--", "cat", "/tmp/in.txt"]),
        "copied in\n"
    );
    let back = node.data_dir.path().join("from-pod.html");
    ok(
        &node,
        &["cp", "web:/www/index.html", back.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "hello from the pod\n"
    );

    // attach to a container with stdin: what we send it reads, what it writes we see.
    wait_pod(&pods, "talk", 90, "Running", |p| phase(p) == "Running").await;
    let out = kubectl(&node, &["attach", "-i", "talk"], Some("hello\n"), &[], 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\nbye\n");
    wait_pod(&pods, "talk", 90, "Succeeded", |p| phase(p) == "Succeeded").await;

    // attach -it to the terminal container: its terminal takes the
    // client's size, and what is typed reaches it.
    wait_pod(&pods, "term", 90, "Running", |p| phase(p) == "Running").await;
    let out = in_terminal(&node, "81", "23", "", "attach -it term");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("23 81"), "{text}");
    assert!(text.contains("typed hello"), "{text}");
    // Its log is the terminal's output.
    eventually("the terminal container's log", 30, async || {
        String::from_utf8_lossy(&kubectl(&node, &["logs", "term"], None, &[], 30).stdout)
            .contains("typed hello")
    })
    .await;

    // port-forward to the pod's httpd, over the WebSocket tunnel and over SPDY.
    for env in [&[][..], &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")][..]] {
        let page = port_forward_get(&node, env, 8080, 2);
        assert!(
            page.iter().all(|p| p.ends_with("hello from the pod\n")),
            "{page:?} {env:?}"
        );
    }
    // A port nobody listens on: the connection closes, kubectl says why.
    let (fwd, local) = start_port_forward(&node, &[], 9);
    let got = http_get(local);
    assert!(got.is_empty() || !got.contains("200"), "{got}");
    drop(fwd);

    // Not bound to a node yet: BadRequest, as upstream.
    let mut pending = pod("pending", json!([container("c", "true")]));
    pending["spec"]["nodeSelector"] = json!({"no-such": "node"});
    apply(&node, pending);
    let e = fails(&node, &["exec", "pending", "--", "true"]);
    assert!(
        e.contains("pod pending does not have a host assigned"),
        "{e}"
    );

    agent_port_refuses_strangers(&node);
}

/// The state name (`running`, `terminated`, …) and its reason of a pod's
/// ephemeral container.
fn ephemeral_state(p: &Pod, name: &str) -> Option<(String, String)> {
    let statuses = p.status.as_ref()?.ephemeral_container_statuses.as_ref()?;
    let state =
        serde_json::to_value(statuses.iter().find(|s| s.name == name)?.state.as_ref()?).ok()?;
    let (kind, detail) = state.as_object()?.iter().next()?;
    let reason = detail["reason"].as_str().unwrap_or_default().to_string();
    Some((kind.clone(), reason))
}

/// `kubectl debug`: ephemeral containers added to a running pod through its
/// `ephemeralcontainers` subresource, run in the pod's namespaces (and its
/// target's PID namespace), attached to, reported and never restarted.
#[tokio::test]
async fn debug_adds_ephemeral_containers() {
    if skip() {
        return;
    }
    let node = RealNode::start("stream-debug");
    let pods: Api<Pod> = Api::namespaced(ready_node(&node).await, "default");
    apply(
        &node,
        pod("web", json!([container("c", "exec httpd -f -p 8080 -h /")])),
    );
    wait_pod(&pods, "web", 90, "Running", running).await;

    // -i with a target: it reads what we send and sees the target's processes.
    let debug = |name: &str, extra: &[&str], script: &str| -> Vec<String> {
        [
            &[
                "debug",
                "web",
                "-c",
                name,
                "--image",
                IMAGE,
                "--image-pull-policy",
                "Never",
            ][..],
            extra,
            &["--", "sh", "-c", script][..],
        ]
        .concat()
        .into_iter()
        .map(String::from)
        .collect()
    };
    let args = debug("dbg", &["-i", "--target", "c"], "read x; echo got $x; ps");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kubectl(&node, &args, Some("hello\n"), &[], 90);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("got hello"), "{text}");
    assert!(text.contains("httpd -f -p 8080"), "{text}");
    let p = wait_pod(&pods, "web", 60, "the debugger completed", |p| {
        ephemeral_state(p, "dbg") == Some(("terminated".into(), "Completed".into()))
    })
    .await;
    // The pod's own readiness is its containers'; the debugger is not ready.
    assert!(running(&p));
    let st = &p.status.unwrap().ephemeral_container_statuses.unwrap()[0];
    assert!(!st.ready);
    assert_eq!(st.restart_count, 0);
    assert_eq!(
        ok(&node, &["logs", "web", "-c", "dbg"]).lines().next(),
        Some("got hello")
    );

    // -it: a terminal of the client's size; without a target, a PID
    // namespace of its own; a failing debugger is not started again.
    let out = in_terminal(
        &node,
        "90",
        "20",
        "",
        "debug web -it -c term --image localhost/busybox:latest --image-pull-policy Never -- sh -c 'read x; tty; stty size; echo typed $x; ps; exit 3'",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("20 90"), "{text}");
    assert!(text.contains("typed hello"), "{text}");
    assert!(!text.contains("httpd"), "{text}");
    wait_pod(&pods, "web", 60, "the terminal debugger ended", |p| {
        ephemeral_state(p, "term") == Some(("terminated".into(), "Error".into()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = pods.get("web").await.unwrap();
    assert_eq!(
        ephemeral_state(&p, "term"),
        Some(("terminated".into(), "Error".into()))
    );

    // The subresource's rules, as upstream words them.
    let e = fails(
        &node,
        &["debug", "web", "-c", "c", "--image", IMAGE, "--", "true"],
    );
    assert!(e.contains("Duplicate value: \"c\""), "{e}");
    let e = fails(
        &node,
        &[
            "debug", "web", "-c", "x", "--image", IMAGE, "--target", "nope", "--", "true",
        ],
    );
    assert!(
        e.contains("targetContainerName: Not found: \"nope\""),
        "{e}"
    );
    let mut with_debugger = pod("made", json!([container("c", "sleep 60")]));
    with_debugger["spec"]["ephemeralContainers"] = json!([{"name": "d", "image": IMAGE}]);
    let out = kubectl(
        &node,
        &["create", "-f", "-"],
        Some(&with_debugger.to_string()),
        &[],
        60,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{e}"
    );
    let names = ok(
        &node,
        &[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}",
        ],
    );
    assert_eq!(names, "dbg term");
}

/// `kubectl <args>` (with `env` before it) in a terminal of `cols`×`rows`
/// made by util-linux `script`, typing "hello" into it.
fn in_terminal(node: &RealNode, cols: &str, rows: &str, env: &str, args: &str) -> Output {
    let inner = format!(
        "stty cols {cols} rows {rows}; {env} KUBECONFIG={} kubectl --cache-dir {} {args}",
        node.server.kubeconfig().display(),
        node.server.dir.path().join("kubectl-cache").display()
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_bounded(script, Some("hello\n"), 60)
}

/// Starts `kubectl port-forward pod/web LOCAL:remote` and waits until it listens.
fn start_port_forward(node: &RealNode, env: &[(&str, &str)], remote: u16) -> (Spawned, u16) {
    let local = free_port();
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", node.server.kubeconfig())
        .arg("--cache-dir")
        .arg(node.server.dir.path().join("kubectl-cache"))
        .args(["port-forward", "pod/web", &format!("{local}:{remote}")])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = Spawned(cmd.spawn().expect("kubectl port-forward"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", local)).is_err() {
        assert!(Instant::now() < deadline, "port-forward did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, local)
}

fn http_get(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

/// `count` HTTP GETs through a port-forward, one connection each.
fn port_forward_get(
    node: &RealNode,
    env: &[(&str, &str)],
    remote: u16,
    count: usize,
) -> Vec<String> {
    let (fwd, local) = start_port_forward(node, env, remote);
    // The readiness probe above connected once already; each GET is a new stream pair.
    let pages = (0..count).map(|_| http_get(local)).collect();
    drop(fwd);
    pages
}

/// The agent's port answers only clients with the cluster's certificates,
/// and only the API server's (or masters').
fn agent_port_refuses_strangers(node: &RealNode) {
    let url = |path: &str| format!("https://{}:10250{path}", node.node_ip);
    let curl = |extra: &[&str], path: &str| -> String {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(extra)
        .arg(url(path));
        String::from_utf8_lossy(&cmd.output().expect("curl").stdout).into_owned()
    };
    assert_eq!(curl(&[], "/healthz"), "200");
    assert_eq!(curl(&[], "/containerLogs/default/web/c"), "401");
    assert_eq!(curl(&[], "/exec/default/web/c?command=id&stdout=1"), "401");
    // A certificate of the cluster's CA, but not the API server's: forbidden.
    let sched = client_cert(
        node,
        &node
            .server
            .dir
            .path()
            .join("server/cred/scheduler.kubeconfig"),
        "scheduler",
    );
    assert_eq!(
        curl(
            &sched.each_ref().map(String::as_str),
            "/containerLogs/default/web/c"
        ),
        "403"
    );
    // The admin (system:masters) may.
    let admin = client_cert(node, &node.server.kubeconfig(), "admin");
    assert_eq!(
        curl(
            &admin.each_ref().map(String::as_str),
            "/containerLogs/default/web/c"
        ),
        "200"
    );
}
