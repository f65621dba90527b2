//! What an operator does every day on a 3-node lab: a pod reaches another
//! on another node by Service name; ConfigMap and Secret volumes; `kubectl
//! logs -f`, `exec`, `port-forward`, `cp` and `top`.

use skiff_e2e::{eventually, http_get, lab_for, name_of, pod_ready, Lab};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

const APPS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-1}
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "echo from $(hostname)" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  greeting: "hello, operator"
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData:
  password: "s3cr3t"
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeSelector: {kubernetes.io/hostname: node-3}
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.5; done']
    volumeMounts:
    - {name: settings, mountPath: /etc/settings}
    - {name: creds, mountPath: /etc/creds, readOnly: true}
  volumes:
  - name: settings
    configMap: {name: settings}
  - name: creds
    secret: {secretName: creds, defaultMode: 0400}
"#;

fn sh(lab: &Lab, script: &str) -> String {
    let out = lab.exec("client", script);
    assert!(
        out.status.success(),
        "exec {script:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_talk_across_nodes_by_name_and_kubectl_reaches_into_them() {
    let Some(lab) = lab_for("the day-to-day e2e test") else {
        return;
    };
    lab.apply(APPS);
    eventually("echo and client Ready", 90, || {
        lab.ready_pods("app=echo").len() == 1 && pod_ready(&lab.get_json(&["pod", "client"]))
    });
    let echo = name_of(&lab.ready_pods("app=echo")[0]);

    // From node-3 to a pod on node-1, by the Service's short, namespaced
    // and full names.
    // The first lookup may precede node-3's DNS rules.
    eventually("echo reachable by name from node-3", 30, || {
        lab.exec("client", "timeout 5 wget -q -O - http://echo/")
            .status
            .success()
    });
    for host in ["echo", "echo.default", "echo.default.svc.cluster.local"] {
        let body = sh(&lab, &format!("timeout 5 wget -q -O - http://{host}/"));
        assert_eq!(body.trim(), format!("echo from {echo}"), "via {host}");
    }

    // ConfigMap and Secret volumes, with the Secret's mode.
    assert_eq!(sh(&lab, "cat /etc/settings/greeting"), "hello, operator");
    assert_eq!(sh(&lab, "cat /etc/creds/password"), "s3cr3t");
    let mode = sh(&lab, "stat -L -c %a /etc/creds/password");
    assert_eq!(mode.trim(), "400");
    // An edited ConfigMap reaches the mounted file.
    lab.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"greeting":"hello again"}}"#,
    ]);
    eventually("the edited ConfigMap in the volume", 120, || {
        lab.exec("client", "cat /etc/settings/greeting").stdout == b"hello again"
    });

    // logs -f follows: new lines arrive while it runs.
    let mut follow = lab
        .kubectl_command(&["logs", "-f", "client", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut ticks = Vec::new();
    while ticks.len() < 4 && started.elapsed() < Duration::from_secs(30) {
        match lines.next() {
            Some(Ok(l)) => ticks.push(l),
            _ => break,
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(ticks.len(), 4, "{ticks:?}");
    let n: Vec<u64> = ticks
        .iter()
        .map(|t| t.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");

    // exec: exit codes come back.
    let out = lab.exec("client", "exit 7");
    assert_eq!(out.status.code(), Some(7));

    // port-forward: the echo pod on the host's loopback.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut forward = lab
        .kubectl_command(&[
            "port-forward",
            &format!("pod/{echo}"),
            &format!("{port}:8080"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut got = Err(String::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        got = http_get(&format!("127.0.0.1:{port}"), "/");
        if got.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(got.unwrap().trim(), format!("echo from {echo}"));

    // cp both ways.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("note.txt");
    std::fs::write(&local, "carried in\n").unwrap();
    lab.kubectl(&["cp", &local.to_string_lossy(), "client:/tmp/note.txt"]);
    assert_eq!(sh(&lab, "cat /tmp/note.txt"), "carried in\n");
    sh(&lab, "echo carried out > /tmp/out.txt");
    let back = dir.path().join("out.txt");
    lab.kubectl(&["cp", "client:/tmp/out.txt", &back.to_string_lossy()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "carried out\n");

    // top: the metrics API has figures for nodes and pods.
    eventually("kubectl top nodes", 90, || {
        let out = lab.kubectl_output(&["top", "nodes"], None);
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success()
            && ["node-1", "node-2", "node-3"]
                .iter()
                .all(|n| text.contains(n))
    });
    eventually("kubectl top pods", 90, || {
        let out = lab.kubectl_output(&["top", "pods"], None);
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success() && text.contains("client") && text.contains(&echo)
    });
}
