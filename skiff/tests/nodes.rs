//! Simulated nodes and the node lifecycle controller: nodes register and
//! stay Ready while their agent runs; when it stops they turn Unknown, get
//! the unreachable taints, and pods leave once their tolerations run out;
//! back again, they are Ready and untainted.

mod common;

use common::{default_service_account, eventually, no_pods_left, Server, Simulator};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use serde_json::json;
use std::time::Duration;

/// Waits for `count` registered nodes, each with its pod CIDR.
async fn nodes_with_cidrs(nodes: &Api<Node>, count: usize) {
    eventually("nodes with pod CIDRs", 30, async || {
        let list = nodes.list(&Default::default()).await.unwrap().items;
        list.len() == count
            && list
                .iter()
                .all(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some())
    })
    .await;
}

fn ready(n: &Node) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn taint_keys(n: &Node) -> Vec<String> {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_nodes_are_tainted_and_their_pods_evicted() {
    let s = Server::start_with(None, &["--node-monitor-grace-period", "3s"]);
    let c = s.client().await;
    let nodes: Api<Node> = Api::all(c.clone());
    let sim = Simulator::start(&s, 3, "lab");
    eventually("3 Ready nodes with pod CIDRs", 30, async || {
        let list = nodes.list(&Default::default()).await.unwrap().items;
        list.len() == 3
            && list.iter().all(|n| {
                ready(n) == "True" && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some()
            })
    })
    .await;

    // Pods on lab-0: one tolerating unreachable for 1 s, one forever.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    default_service_account(&c).await;
    for (name, toleration) in [
        (
            "brief",
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}),
        ),
        ("steadfast", json!({"operator": "Exists"})),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "lab-0", "tolerations": [toleration], "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    eventually("pods running with IPs", 20, async || {
        pods.list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|p| {
                let st = p.status.as_ref();
                st.and_then(|s| s.phase.as_deref()) == Some("Running")
                    && st
                        .and_then(|s| s.pod_ip.as_ref())
                        .is_some_and(|ip| ip.starts_with("10.42."))
            })
    })
    .await;

    // The machine "dies".
    drop(sim);
    eventually("lab-0 Unknown and tainted unreachable", 30, async || {
        let n = nodes.get("lab-0").await.unwrap();
        ready(&n) == "Unknown"
            && taint_keys(&n).contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
    })
    .await;
    eventually("the briefly tolerating pod evicted", 30, async || {
        pods.get("brief")
            .await
            .map(|p| p.metadata.deletion_timestamp.is_some())
            .unwrap_or(true)
    })
    .await;
    let steadfast = pods.get("steadfast").await.unwrap();
    assert!(
        steadfast.metadata.deletion_timestamp.is_none(),
        "a pod tolerating forever stays"
    );

    // Back again: Ready, taints gone, and the evicted pod's deletion completes.
    let _sim = Simulator::start(&s, 3, "lab");
    eventually("lab-0 Ready and untainted", 30, async || {
        let n = nodes.get("lab-0").await.unwrap();
        ready(&n) == "True" && taint_keys(&n).is_empty()
    })
    .await;
    eventually("the evicted pod gone", 30, async || {
        pods.get_opt("brief").await.unwrap().is_none()
    })
    .await;
}

/// Endpoints and EndpointSlices follow the pods a Service selects, with
/// named target ports resolved per pod and slices of at most 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoints_of_their_pods() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{DeleteParams, ListParams};

    let s = Server::start(None);
    let c = s.client().await;
    let _sim = Simulator::start(&s, 2, "ep");
    let nodes: Api<Node> = Api::all(c.clone());
    nodes_with_cidrs(&nodes, 2).await;
    default_service_account(&c).await;
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    for svc in [
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        json!({"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}}),
    ] {
        svcs.create(
            &PostParams::default(),
            &serde_json::from_value(svc).unwrap(),
        )
        .await
        .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    for i in 0..150 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i:03}"), "labels": {"app": "web"}},
            "spec": {"nodeName": format!("ep-{}", i % 2), "containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    eventually("150 ready addresses on port 8080", 60, async || {
        let Some(ep) = eps.get_opt("web").await.unwrap() else {
            return false;
        };
        let subsets = ep.subsets.unwrap_or_default();
        subsets.len() == 1
            && subsets[0].addresses.as_ref().map_or(0, Vec::len) == 150
            && subsets[0].ports.as_ref().unwrap()[0].port == 8080
    })
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let by_service = ListParams::default().labels("kubernetes.io/service-name=web");
    eventually("two slices of 100 and 50", 30, async || {
        let mut sizes: Vec<usize> = slices
            .list(&by_service)
            .await
            .unwrap()
            .items
            .iter()
            .map(|s| s.endpoints.len())
            .collect();
        sizes.sort();
        sizes == vec![50, 100]
    })
    .await;
    assert!(
        eps.get_opt("manual").await.unwrap().is_none(),
        "a Service without a selector is left alone"
    );

    // A deleted pod leaves; a deleted Service takes its endpoints along.
    pods.delete("web-000", &DeleteParams::default())
        .await
        .unwrap();
    eventually("149 addresses", 30, async || {
        let ep = eps.get("web").await.unwrap();
        ep.subsets
            .unwrap_or_default()
            .first()
            .and_then(|s| s.addresses.as_ref())
            .map_or(0, Vec::len)
            == 149
    })
    .await;
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("endpoints and slices gone", 30, async || {
        eps.get_opt("web").await.unwrap().is_none()
            && slices.list(&by_service).await.unwrap().items.is_empty()
    })
    .await;
}

/// Pod GC removes pods of vanished nodes and finished pods beyond the
/// threshold (oldest first); a finished Job goes once its TTL has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_and_finished_job_ttl() {
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{Patch, PatchParams};

    let s = Server::start_with(None, &["--terminated-pod-gc-threshold", "2"]);
    let c = s.client().await;
    let _sim = Simulator::start(&s, 1, "gc");
    let nodes: Api<Node> = Api::all(c.clone());
    nodes_with_cidrs(&nodes, 1).await;
    default_service_account(&c).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pod = |name: &str, node: &str, exit: bool| -> Pod {
        let mut p = json!({"metadata": {"name": name}, "spec": {"nodeName": node, "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
        if exit {
            p["metadata"]["annotations"] =
                json!({"sim.skiff.dev/exit-code": "0", "sim.skiff.dev/run-seconds": "0.2"});
        }
        serde_json::from_value(p).unwrap()
    };
    pods.create(&PostParams::default(), &pod("ghost", "no-such-node", false))
        .await
        .unwrap();
    for i in 0..4 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("done-{i}"), "gc-0", true),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    eventually(
        "the orphan gone and two finished pods left",
        45,
        async || {
            let names: Vec<String> = pods
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|p| p.name_any())
                .collect();
            names == vec!["done-2".to_string(), "done-3".to_string()]
        },
    )
    .await;

    let jobs: Api<Job> = Api::namespaced(c.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "short-lived"},
        "spec": {"ttlSecondsAfterFinished": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let done = json!({"status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}]}});
    jobs.patch_status("short-lived", &PatchParams::default(), &Patch::Merge(done))
        .await
        .unwrap();
    eventually("the finished job deleted after its TTL", 30, async || {
        jobs.get_opt("short-lived").await.unwrap().is_none()
    })
    .await;
}

/// kubectl drain evicts through pods/eviction, which honours disruption budgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_respects_disruption_budgets() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    if !common::have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let s = Server::start(None);
    let c = s.client().await;
    let _sim = Simulator::start(&s, 1, "dr");
    let nodes: Api<Node> = Api::all(c.clone());
    nodes_with_cidrs(&nodes, 1).await;
    default_service_account(&c).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    for i in 0..2 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("db-{i}"), "labels": {"app": "db"}},
            "spec": {"nodeName": "dr-0", "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), "default");
    let pdb: PodDisruptionBudget =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    eventually("the budget counting two healthy pods", 30, async || {
        let st = pdbs.get("db").await.unwrap().status;
        st.is_some_and(|st| {
            st.current_healthy == 2 && st.desired_healthy == 2 && st.disruptions_allowed == 0
        })
    })
    .await;

    // No disruption allowed: drain gives up at its timeout, pods untouched.
    let out = s.kubectl(&[
        "drain",
        "dr-0",
        "--force",
        "--ignore-daemonsets",
        "--timeout=4s",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain should fail");
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert_eq!(
        pods.list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count(),
        2
    );
    let node = nodes.get("dr-0").await.unwrap();
    assert_eq!(
        node.spec.and_then(|s| s.unschedulable),
        Some(true),
        "drain cordons first"
    );

    // One may go at a time: drain succeeds, evicting them in turn.
    let relax = json!({"spec": {"minAvailable": null, "maxUnavailable": 1}});
    pdbs.patch(
        "db",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(relax),
    )
    .await
    .unwrap();
    let out = s.kubectl(&[
        "drain",
        "dr-0",
        "--force",
        "--ignore-daemonsets",
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    no_pods_left("the node empty", &pods, 30).await;
}

/// 100 simulated nodes; the machines behind 10 of them die. Those nodes go
/// Unknown and tainted, their pods are evicted once their toleration runs
/// out, and the Deployment's ReplicaSet recreates them on the other 90.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_lost_nodes_are_recreated_elsewhere() {
    use k8s_openapi::api::apps::v1::Deployment;
    use std::collections::HashSet;

    let s = Server::start_with(None, &["--node-monitor-grace-period", "3s"]);
    let c = s.client().await;
    let _most = Simulator::start(&s, 90, "stay");
    let doomed = Simulator::start(&s, 10, "doomed");
    let nodes: Api<Node> = Api::all(c.clone());
    nodes_with_cidrs(&nodes, 100).await;
    default_service_account(&c).await;

    // One pod per node (spread by hostname; tainted nodes, such as lost ones,
    // do not count as domains), tolerating a lost node for 2 s instead of
    // the default 300 s.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "fleet"},
        "spec": {"replicas": 100, "selector": {"matchLabels": {"app": "fleet"}},
                 "template": {"metadata": {"labels": {"app": "fleet"}}, "spec": {
                     "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}],
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor", "labelSelector": {"matchLabels": {"app": "fleet"}}}],
                     "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let placement = async || -> Vec<(String, bool)> {
        pods.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .map(|p| {
                let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
                let doomed = node.starts_with("doomed-");
                (node, doomed)
            })
            .collect()
    };
    eventually("100 running pods, one per node", 60, async || {
        let p = placement().await;
        p.len() == 100 && p.iter().map(|(n, _)| n).collect::<HashSet<_>>().len() == 100
    })
    .await;

    drop(doomed);
    eventually("the 10 lost nodes Unknown and tainted", 60, async || {
        let list = nodes.list(&Default::default()).await.unwrap().items;
        let lost: Vec<&Node> = list
            .iter()
            .filter(|n| n.name_any().starts_with("doomed-"))
            .collect();
        lost.len() == 10
            && lost.iter().all(|n| {
                ready(n) == "Unknown"
                    && taint_keys(n)
                        .contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
            })
    })
    .await;
    // Evicted pods stay Terminating (no kubelet confirms on a dead node),
    // but the ReplicaSet counts only live ones and replaces them.
    eventually(
        "100 running pods again, all on live nodes",
        90,
        async || {
            let p = placement().await;
            p.len() == 100 && p.iter().all(|(_, doomed)| !doomed)
        },
    )
    .await;
    eventually("the deployment available again", 30, async || {
        let d = deployments
            .get("fleet")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        d.available_replicas == Some(100) && d.ready_replicas == Some(100)
    })
    .await;
}
