//! The controller manager's `/metrics` on a real server with simulated
//! nodes: a Deployment rolling out shows in the deployment and replicaset
//! queues' adds, reconciles and latencies, and both queues drain to depth 0.

mod common;

use common::{default_service_account, eventually, Server, Simulator};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;

/// GET `path` over plain HTTP on loopback: (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of one series (`name{labels}` exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// Reconciles of `controller` that ended, whatever the result.
fn reconciles(text: &str, controller: &str) -> f64 {
    ["success", "error", "requeue"]
        .iter()
        .filter_map(|r| {
            sample(
                text,
                &format!("controller_runtime_reconcile_total{{controller=\"{controller}\",result=\"{r}\"}}"),
            )
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rollout_counted_in_controller_metrics() {
    let port = common::free_port();
    let s = Server::start_with(
        None,
        &["--controller-metrics-address", &format!("127.0.0.1:{port}")],
    );
    let c = s.client().await;
    let _sim = Simulator::start(&s, 2, "m");
    default_service_account(&c).await;

    let (status, body) = get(port, "/healthz");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "ok");

    // The controllers hold the lease and have registered their queues.
    let mut before = String::new();
    eventually("the deployment and replicaset queues", 30, async || {
        before = get(port, "/metrics").1;
        sample(&before, "workqueue_adds_total{name=\"deployment\"}").is_some()
            && sample(&before, "workqueue_adds_total{name=\"replicaset\"}").is_some()
    })
    .await;
    let (status, _) = get(port, "/nothing");
    assert!(status.contains(" 404 "), "{status}");

    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    }))
    .unwrap();
    let ds: Api<Deployment> = Api::namespaced(c.clone(), "default");
    ds.create(&PostParams::default(), &d).await.unwrap();
    eventually("web rolled out", 60, async || {
        let d = ds.get("web").await.unwrap();
        let s = d.status.unwrap_or_default();
        s.observed_generation == d.metadata.generation && s.available_replicas == Some(3)
    })
    .await;

    // Once settled, both queues are empty and nothing is running.
    let mut after = String::new();
    eventually("both queues drained", 30, async || {
        after = get(port, "/metrics").1;
        ["deployment", "replicaset"].iter().all(|q| {
            sample(&after, &format!("workqueue_depth{{name=\"{q}\"}}")) == Some(0.0)
                && sample(
                    &after,
                    &format!("controller_runtime_active_workers{{controller=\"{q}\"}}"),
                ) == Some(0.0)
        })
    })
    .await;
    for q in ["deployment", "replicaset"] {
        let adds = format!("workqueue_adds_total{{name=\"{q}\"}}");
        assert!(
            sample(&after, &adds) > sample(&before, &adds),
            "{q} adds did not grow:\n{after}"
        );
        // The rollout took several reconciles: the create, its pods' and
        // sets' status changes.
        assert!(
            reconciles(&after, q) >= reconciles(&before, q) + 2.0,
            "{q} reconciles did not grow:\n{after}"
        );
        let took = format!("workqueue_work_duration_seconds_count{{name=\"{q}\"}}");
        assert_eq!(
            sample(&after, &took),
            Some(reconciles(&after, q)),
            "one latency per reconcile:\n{after}"
        );
        let inf = format!("workqueue_work_duration_seconds_bucket{{name=\"{q}\",le=\"+Inf\"}}");
        assert_eq!(sample(&after, &inf), sample(&after, &took), "{after}");
    }
    // Every sample line is `name{labels} number`.
    for line in after.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    }
}
