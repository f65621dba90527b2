//! Persistent volumes on a real server: claims bound to the volumes that
//! fit them (and not to those that do not), both statuses and upstream's
//! annotations, DefaultStorageClass admission with the `local-path` class,
//! and reclaim: Retain keeps a released volume, Delete removes it.

mod common;

use common::{eventually, Server};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

async fn make_volume(c: &Client, name: &str, size: &str, policy: &str) {
    let v: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": policy, "storageClassName": "",
                 "hostPath": {"path": format!("/srv/{name}")}},
    }))
    .unwrap();
    Api::<PersistentVolume>::all(c.clone())
        .create(&PostParams::default(), &v)
        .await
        .unwrap();
}

async fn make_claim(
    c: &Client,
    name: &str,
    size: &str,
    class: Option<&str>,
) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    let claim: PersistentVolumeClaim =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<PersistentVolumeClaim>::namespaced(c.clone(), "default")
        .create(&PostParams::default(), &claim)
        .await
        .unwrap()
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn phase_of_volume(v: &PersistentVolume) -> String {
    v.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_to_fitting_volumes_and_released_volumes_are_reclaimed() {
    let s = Server::start(None);
    let c = s.client().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(c.clone());
    make_volume(&c, "small", "100Mi", "Delete").await;
    make_volume(&c, "big", "5Gi", "Retain").await;
    make_volume(&c, "medium", "1Gi", "Delete").await;
    eventually("volumes Available", 20, async || {
        volumes
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|v| phase_of_volume(v) == "Available")
    })
    .await;

    // 500Mi with no class (""): the smallest volume that fits is medium.
    make_claim(&c, "one", "500Mi", Some("")).await;
    eventually("claim one Bound", 20, async || {
        phase_of_claim(&claims.get("one").await.unwrap()) == "Bound"
    })
    .await;
    let one = claims.get("one").await.unwrap();
    assert_eq!(
        one.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("medium")
    );
    assert_eq!(
        one.annotations()
            .get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        one.status.as_ref().unwrap().capacity.as_ref().unwrap()["storage"].0,
        "1Gi"
    );
    let medium = volumes.get("medium").await.unwrap();
    assert_eq!(phase_of_volume(&medium), "Bound");
    let r = medium.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(
        (r.name.as_deref(), r.uid.as_deref()),
        (Some("one"), one.metadata.uid.as_deref())
    );

    // 10Gi fits nothing: Pending, and nothing else is taken.
    make_claim(&c, "huge", "10Gi", Some("")).await;
    make_claim(&c, "two", "2Gi", Some("")).await;
    eventually("claim two Bound to big", 20, async || {
        claims
            .get("two")
            .await
            .unwrap()
            .spec
            .unwrap()
            .volume_name
            .as_deref()
            == Some("big")
    })
    .await;
    assert_eq!(
        phase_of_claim(&claims.get("huge").await.unwrap()),
        "Pending"
    );
    assert_eq!(
        phase_of_volume(&volumes.get("small").await.unwrap()),
        "Available"
    );

    // No class named: the default one (local-path, made by the controllers).
    let classes: Api<StorageClass> = Api::all(c.clone());
    eventually("the local-path class", 20, async || {
        classes.get_opt("local-path").await.unwrap().is_some()
    })
    .await;
    let defaulted = make_claim(&c, "three", "1Mi", None).await;
    assert_eq!(
        defaulted.spec.unwrap().storage_class_name.as_deref(),
        Some("local-path")
    );
    let shown = s.ok(&["get", "storageclass"]);
    assert!(shown.contains("local-path (default)"), "{shown}");

    // Reclaim: Delete removes medium once its claim is gone; Retain keeps
    // big as Released.
    claims
        .delete("one", &DeleteParams::default())
        .await
        .unwrap();
    claims
        .delete("two", &DeleteParams::default())
        .await
        .unwrap();
    eventually("medium deleted", 20, async || {
        volumes.get_opt("medium").await.unwrap().is_none()
    })
    .await;
    eventually("big Released", 20, async || {
        phase_of_volume(&volumes.get("big").await.unwrap()) == "Released"
    })
    .await;
    // A Released volume is not handed to a new claim.
    make_claim(&c, "four", "2Gi", Some("")).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        phase_of_claim(&claims.get("four").await.unwrap()),
        "Pending"
    );
}
