//! The classic first app: a Deployment `hello-world` of 3 behind a
//! NodePort Service on a 3-node lab. Every node's NodePort answers and the
//! replies come from all the pods; scaled to 5; rolled to a new image tag
//! while requests keep flowing, none failing; `rollout undo` brings the
//! old tag back.

use skiff_e2e::{eventually, http_get, lab_for, name_of, Lab};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello-world}
spec:
  replicas: 3
  selector: {matchLabels: {app: hello-world}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: hello-world}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo "hello from $(hostname)" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
        # Keep serving while every node's proxy drops this endpoint.
        lifecycle:
          preStop: {exec: {command: [sleep, "3"]}}
---
apiVersion: v1
kind: Service
metadata: {name: hello-world}
spec:
  type: NodePort
  selector: {app: hello-world}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// The pods that answered through `addr` in `tries` requests.
fn answering(addr: &str, tries: usize) -> BTreeSet<String> {
    (0..tries)
        .filter_map(|_| http_get(addr, "/").ok())
        .filter_map(|r| r.trim().strip_prefix("hello from ").map(str::to_string))
        .collect()
}

fn ready_names(lab: &Lab) -> BTreeSet<String> {
    lab.ready_pods("app=hello-world")
        .iter()
        .map(name_of)
        .collect()
}

fn images(lab: &Lab) -> BTreeSet<String> {
    lab.pods("app=hello-world")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn rollout(lab: &Lab) {
    lab.kubectl(&[
        "rollout",
        "status",
        "deployment/hello-world",
        "--timeout=180s",
    ]);
}

#[test]
fn hello_world_serves_scales_rolls_and_undoes() {
    let Some(lab) = lab_for("the first-app e2e test") else {
        return;
    };
    lab.apply(APP);
    eventually("3 hello-world pods Ready", 90, || {
        ready_names(&lab).len() == 3
    });
    let port = lab.kubectl(&[
        "get",
        "svc",
        "hello-world",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let nodes = lab.node_ips();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let addrs: Vec<String> = nodes.iter().map(|(_, ip)| format!("{ip}:{port}")).collect();

    // Every node's NodePort answers, with replies from all three pods.
    let pods = ready_names(&lab);
    for addr in &addrs {
        let mut seen = BTreeSet::new();
        eventually(&format!("all 3 pods answer through {addr}"), 60, || {
            seen.extend(answering(addr, 10));
            seen == pods
        });
    }

    // Scale to 5: the new pods answer too.
    lab.kubectl(&["scale", "deployment/hello-world", "--replicas=5"]);
    eventually("5 pods Ready", 90, || ready_names(&lab).len() == 5);
    let pods = ready_names(&lab);
    let mut seen = BTreeSet::new();
    eventually("all 5 pods answer", 60, || {
        seen.extend(answering(&addrs[0], 10));
        seen == pods
    });

    // A rolling update to a new tag while requests flow through every node.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let load = {
        let (stop, sent, failed, addrs) =
            (stop.clone(), sent.clone(), failed.clone(), addrs.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let addr = &addrs[i % addrs.len()];
                if let Err(e) = http_get(addr, "/") {
                    failed.lock().unwrap().push(e);
                }
                sent.fetch_add(1, Ordering::SeqCst);
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    lab.kubectl(&[
        "set",
        "image",
        "deployment/hello-world",
        "web=localhost/busybox:v2",
    ]);
    rollout(&lab);
    eventually("only v2 pods", 60, || {
        images(&lab) == BTreeSet::from(["localhost/busybox:v2".to_string()])
    });
    // The last old pods' preStop and the proxies' last sync.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let failed = failed.lock().unwrap();
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent > 100, "only {sent} requests during the rollout");
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed during the rolling update: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(ready_names(&lab).len(), 5);

    // Undo: back to the first tag, still 5 serving.
    let history = lab.kubectl(&["rollout", "history", "deployment/hello-world"]);
    assert!(history.contains('2'), "{history}");
    lab.kubectl(&["rollout", "undo", "deployment/hello-world"]);
    rollout(&lab);
    eventually("only latest pods after undo", 60, || {
        images(&lab) == BTreeSet::from(["localhost/busybox:latest".to_string()])
    });
    eventually("5 pods Ready after undo", 60, || {
        ready_names(&lab).len() == 5
    });
    eventually("the NodePort answers after undo", 30, || {
        http_get(&addrs[2], "/").is_ok()
    });
}
