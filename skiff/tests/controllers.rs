//! The controllers inside `skiff server`, seen through kube-rs: default
//! service accounts and pod admission, node pod CIDRs, the `kubernetes`
//! Service's endpoints.

mod common;

use common::{unique_ns, Server};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Polls `check` until it yields, for at most 20 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_and_pod_admission() {
    let s = Server::start(None);
    let c = s.client().await;
    let ns = unique_ns("sa");
    Api::<Namespace>::all(c.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), &ns);
    eventually("the default service account", || async {
        sas.get_opt("default").await.unwrap()
    })
    .await;
    // Deleted, it comes back.
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the default service account again", || async {
        sas.get_opt("default").await.unwrap()
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let pod = |name: &str, sa: Option<&str>| -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let Some(sa) = sa {
            spec["serviceAccountName"] = json!(sa);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let p = pods
        .create(&PostParams::default(), &pod("p1", None))
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let tolerations = spec.tolerations.unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let t = tolerations
            .iter()
            .find(|t| t.key.as_deref() == Some(key))
            .expect("default toleration");
        assert_eq!(
            (t.effect.as_deref(), t.toleration_seconds),
            (Some("NoExecute"), Some(300))
        );
    }
    let err = pods
        .create(&PostParams::default(), &pod("p2", Some("nobody")))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(st) => {
            assert_eq!(st.code, 403);
            assert!(
                st.message.contains(r#"serviceaccount "nobody" not found"#),
                "{}",
                st.message
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs() {
    let s = Server::start(None);
    let c = s.client().await;
    let nodes: Api<Node> = Api::all(c.clone());
    let node = |name: &str| -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
    };
    for n in ["n0", "n1", "n2"] {
        nodes
            .create(&PostParams::default(), &node(n))
            .await
            .unwrap();
    }
    let cidr_of = |name: &'static str| {
        let nodes = nodes.clone();
        async move { nodes.get(name).await.unwrap().spec.and_then(|s| s.pod_cidr) }
    };
    let mut cidrs = HashSet::new();
    for n in ["n0", "n1", "n2"] {
        cidrs.insert(eventually("a pod CIDR", || cidr_of(n)).await);
    }
    assert_eq!(cidrs.len(), 3, "{cidrs:?}");
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.42.") && c.ends_with(".0/24")),
        "{cidrs:?}"
    );
    // A removed node's range is handed out again.
    let freed = nodes
        .get("n1")
        .await
        .unwrap()
        .spec
        .unwrap()
        .pod_cidr
        .unwrap();
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    nodes
        .create(&PostParams::default(), &node("n3"))
        .await
        .unwrap();
    let got = eventually("a pod CIDR for n3", || cidr_of("n3")).await;
    assert_eq!(got, freed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_points_at_the_api_server() {
    let s = Server::start(None);
    let c = s.client().await;
    let ep = Api::<Endpoints>::namespaced(c, "default")
        .get("kubernetes")
        .await
        .unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, s.port as i32);
}
