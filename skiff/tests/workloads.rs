//! ReplicaSets and Deployments on a real server with simulated nodes (pods
//! run and turn Ready at once): replica counts, adoption and release,
//! rolling-update arithmetic step by step, Recreate, and the kubectl
//! rollout verbs.

mod common;

use common::{default_service_account, eventually, settled, Server, Simulator};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

async fn cluster() -> (Server, Client, Simulator) {
    let s = Server::start(None);
    let c = s.client().await;
    let sim = Simulator::start(&s, 3, "w");
    default_service_account(&c).await;
    (s, c, sim)
}

async fn default_events(c: &Client) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    events.list(&Default::default()).await.unwrap().items
}

fn owned_by<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true))
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_keep_count_adopt_and_release() {
    let (_s, c, _sim) = cluster().await;
    let sets: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "rs"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs"}},
                 "template": {"metadata": {"labels": {"app": "rs", "tier": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let rs = sets.create(&PostParams::default(), &rs).await.unwrap();
    let uid = rs.uid().unwrap();
    let status = async || sets.get("rs").await.unwrap().status.unwrap_or_default();
    eventually("3 ready replicas", 30, async || {
        let s = status().await;
        s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == Some(1)
    })
    .await;

    // An orphan that matches is adopted; the surplus one goes.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "rs"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    eventually(
        "the orphan adopted and the count back to 3",
        30,
        async || {
            let all = pods.list(&ListParams::default()).await.unwrap().items;
            let mine = owned_by(&all, &uid);
            mine.len() == 3 && status().await.replicas == 3
        },
    )
    .await;
    let notes = async || -> Vec<String> {
        default_events(&c)
            .await
            .into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("replicaset-controller"))
            .filter_map(|e| e.note)
            .collect()
    };
    eventually(
        "SuccessfulCreate and SuccessfulDelete events",
        10,
        async || {
            let notes = notes().await;
            notes.iter().any(|n| n.starts_with("Created pod: rs-"))
                && notes.iter().any(|n| n.starts_with("Deleted pod: "))
        },
    )
    .await;

    // A pod relabelled out of the selector is released and replaced.
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    let victim = owned_by(&all, &uid)[0].name_any();
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "elsewhere"}}})),
    )
    .await
    .unwrap();
    eventually("the relabelled pod released and replaced", 30, async || {
        let p = pods.get(&victim).await.unwrap();
        let all = pods.list(&ListParams::default()).await.unwrap().items;
        p.owner_references().is_empty() && owned_by(&all, &uid).len() == 3
    })
    .await;

    // Scale down: two go, three minus two remain.
    sets.patch(
        "rs",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("1 replica", 30, async || {
        let all = pods.list(&ListParams::default()).await.unwrap().items;
        owned_by(&all, &uid).len() == 1 && status().await.replicas == 1
    })
    .await;
}

/// Events about one object go through upstream's correlator: a set that
/// creates 40 pods writes nine "Created pod" events, then one combined event
/// that counts the similar ones, and drops what comes after 25 in a burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_similar_events_are_combined_and_capped() {
    let (_s, c, _sim) = cluster().await;
    let sets: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "many"},
        "spec": {"replicas": 40, "selector": {"matchLabels": {"app": "many"}},
                 "template": {"metadata": {"labels": {"app": "many"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();
    eventually("40 replicas", 60, async || {
        sets.get("many")
            .await
            .unwrap()
            .status
            .unwrap_or_default()
            .replicas
            == 40
    })
    .await;
    let created = async || -> Vec<Event> {
        default_events(&c)
            .await
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("many")
            })
            .collect()
    };
    let combined = |e: &Event| {
        e.note
            .as_deref()
            .is_some_and(|n| n.starts_with("(combined from similar events): Created pod: many-"))
    };
    // 25 pass the spam filter: nine on their own, the combined one and 15 repeats of it.
    eventually("the combined event counted to 16", 30, async || {
        created()
            .await
            .iter()
            .any(|e| combined(e) && e.series.as_ref().is_some_and(|s| s.count == 16))
    })
    .await;
    let all = created().await;
    assert_eq!(all.len(), 10, "{all:?}");
    assert_eq!(all.iter().filter(|e| combined(e)).count(), 1);
    assert!(all.iter().filter(|e| !combined(e)).all(|e| e
        .note
        .as_deref()
        .is_some_and(|n| n.starts_with("Created pod: many-"))
        && e.series.is_none()));
}

/// The ScalingReplicaSet notes of a deployment, oldest first.
async fn scaling(c: &Client, deployment: &str) -> Vec<String> {
    let mut list: Vec<Event> = default_events(c)
        .await
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("ScalingReplicaSet")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(deployment)
        })
        .collect();
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    list.into_iter().filter_map(|e| e.note).collect()
}

/// The deployment's scaling events once there are `n` (or more, or after
/// 10 s, so that a wrong sequence shows in full).
async fn scaling_settled(c: &Client, deployment: &str, n: usize) -> Vec<String> {
    settled(10, async || scaling(c, deployment).await, |e| e.len() >= n).await
}

async fn deploy(c: &Client, name: &str, replicas: i32, strategy: serde_json::Value) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(c.clone(), "default")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

async fn rolled_out(c: &Client, name: &str, replicas: i32) {
    let ds: Api<Deployment> = Api::namespaced(c.clone(), "default");
    eventually(&format!("{name} rolled out"), 60, async || {
        let d = ds.get(name).await.unwrap();
        let s = d.status.unwrap_or_default();
        s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(replicas)
            && s.replicas == Some(replicas)
            && s.available_replicas == Some(replicas)
    })
    .await;
}

async fn set_image(c: &Client, name: &str, image: &str) {
    Api::<Deployment>::namespaced(c.clone(), "default")
        .patch(name, &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})))
        .await
        .unwrap();
}

/// Replica-set names in the order they scale: (first set, second set).
fn with_names(notes: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    notes
        .iter()
        .map(|n| {
            let set = n.split_whitespace().nth(4).unwrap().to_string();
            if !names.contains(&set) {
                names.push(set.clone());
            }
            let i = names.iter().position(|x| *x == set).unwrap();
            // A third set (there should be none) shows as such.
            n.replace(&set, ["OLD", "NEW"].get(i).copied().unwrap_or("THIRD"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_step_as_upstream() {
    let (_s, c, _sim) = cluster().await;
    // maxSurge 1, maxUnavailable 0: one new up, then one old down.
    deploy(
        &c,
        "surge",
        4,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
    )
    .await;
    rolled_out(&c, "surge", 4).await;
    set_image(&c, "surge", "busybox:2").await;
    rolled_out(&c, "surge", 4).await;
    assert_eq!(
        with_names(&scaling_settled(&c, "surge", 9).await),
        [
            "Scaled up replica set OLD from 0 to 4",
            "Scaled up replica set NEW from 0 to 1",
            "Scaled down replica set OLD from 4 to 3",
            "Scaled up replica set NEW from 1 to 2",
            "Scaled down replica set OLD from 3 to 2",
            "Scaled up replica set NEW from 2 to 3",
            "Scaled down replica set OLD from 2 to 1",
            "Scaled up replica set NEW from 3 to 4",
            "Scaled down replica set OLD from 1 to 0",
        ]
    );

    // maxSurge 0, maxUnavailable 1: one old down, then one new up.
    deploy(
        &c,
        "nosurge",
        4,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
    )
    .await;
    rolled_out(&c, "nosurge", 4).await;
    set_image(&c, "nosurge", "busybox:2").await;
    rolled_out(&c, "nosurge", 4).await;
    assert_eq!(
        with_names(&scaling_settled(&c, "nosurge", 9).await),
        [
            "Scaled up replica set OLD from 0 to 4",
            "Scaled down replica set OLD from 4 to 3",
            "Scaled up replica set NEW from 0 to 1",
            "Scaled down replica set OLD from 3 to 2",
            "Scaled up replica set NEW from 1 to 2",
            "Scaled down replica set OLD from 2 to 1",
            "Scaled up replica set NEW from 2 to 3",
            "Scaled down replica set OLD from 1 to 0",
            "Scaled up replica set NEW from 3 to 4",
        ]
    );

    // Recreate: every old pod down before any new one.
    deploy(&c, "recreate", 3, json!({"type": "Recreate"})).await;
    rolled_out(&c, "recreate", 3).await;
    set_image(&c, "recreate", "busybox:2").await;
    rolled_out(&c, "recreate", 3).await;
    assert_eq!(
        with_names(&scaling(&c, "recreate").await),
        [
            "Scaled up replica set OLD from 0 to 3",
            "Scaled down replica set OLD from 3 to 0",
            "Scaled up replica set NEW from 0 to 3",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_verbs() {
    let (s, c, _sim) = cluster().await;
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1",
        "--replicas=3",
    ]);
    s.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let got = s.ok(&["get", "deploy", "web", "--no-headers"]);
    assert!(
        got.split_whitespace().take(4).eq(["web", "3/3", "3", "3"]),
        "{got}"
    );
    assert!(s
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[*].reason}"
        ])
        .contains("NewReplicaSetAvailable"));

    s.ok(&["set", "image", "deploy/web", "busybox=busybox:2"]);
    s.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let history = s.ok(&["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );

    // Undo goes back to the first template, as revision 3.
    s.ok(&["rollout", "undo", "deploy/web"]);
    s.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let image = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "busybox:1");
    let history = s.ok(&["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("2 ") && history.contains("3 ") && !history.contains("\n1 "),
        "{history}"
    );
    assert_eq!(s.ok(&["get", "rs", "--no-headers"]).lines().count(), 2);

    // Paused: a template change makes no new replica set until resumed.
    s.ok(&["rollout", "pause", "deploy/web"]);
    s.ok(&["set", "image", "deploy/web", "busybox=busybox:3"]);
    eventually("the paused condition", 20, async || {
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[*].reason}",
        ])
        .contains("DeploymentPaused")
    })
    .await;
    assert_eq!(s.ok(&["get", "rs", "--no-headers"]).lines().count(), 2);
    s.ok(&["rollout", "resume", "deploy/web"]);
    s.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert_eq!(s.ok(&["get", "rs", "--no-headers"]).lines().count(), 3);

    // Restart makes a new replica set with the same image.
    s.ok(&["rollout", "restart", "deploy/web"]);
    s.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert_eq!(s.ok(&["get", "rs", "--no-headers"]).lines().count(), 4);

    // A rollout that cannot progress says so once its deadline passes.
    let ds: Api<Deployment> = Api::namespaced(c.clone(), "default");
    ds.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "progressDeadlineSeconds": 2,
            "template": {"spec": {"nodeSelector": {"no-such": "node"}}}
        }})),
    )
    .await
    .unwrap();
    let err = s.fails(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}
