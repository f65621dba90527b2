use super::*;
use serde_json::json;
use std::path::Path;

fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
    let mut c = json!({
        "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}},
    });
    merge(&mut c, extra);
    serde_json::from_value(c).unwrap()
}

fn volume(extra: serde_json::Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": "pv1", "labels": {"tier": "fast"}},
        "spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "",
                 "capacity": {"storage": "2Gi"}, "hostPath": {"path": "/srv/pv1"}},
        "status": {"phase": "Available"},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            match b.get_mut(&k) {
                Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                _ => {
                    b.insert(k, v);
                }
            }
        }
    }
}

#[test]
fn a_volume_fits_a_claim_by_class_modes_size_and_selector() {
    assert!(fits(&volume(json!({})), &claim(json!({}))));
    // Too small.
    assert!(!fits(
        &volume(json!({})),
        &claim(json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}}))
    ));
    // Another class.
    assert!(!fits(
        &volume(json!({})),
        &claim(json!({"spec": {"storageClassName": "local-path"}}))
    ));
    // A mode it does not offer.
    assert!(!fits(
        &volume(json!({})),
        &claim(json!({"spec": {"accessModes": ["ReadWriteMany"]}}))
    ));
    // Block vs Filesystem.
    assert!(!fits(
        &volume(json!({"spec": {"volumeMode": "Block"}})),
        &claim(json!({}))
    ));
    // Selectors.
    assert!(fits(
        &volume(json!({})),
        &claim(json!({"spec": {"selector": {"matchLabels": {"tier": "fast"}}}}))
    ));
    assert!(!fits(
        &volume(json!({})),
        &claim(json!({"spec": {"selector": {"matchLabels": {"tier": "slow"}}}}))
    ));
    // Released volumes are not reused.
    assert!(!fits(
        &volume(json!({"status": {"phase": "Released"}})),
        &claim(json!({}))
    ));
}

#[test]
fn a_volume_bound_or_pre_bound_elsewhere_does_not_fit() {
    let pre_bound_here =
        volume(json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}}));
    assert!(fits(&pre_bound_here, &claim(json!({}))));
    let bound_here = volume(
        json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "u1"}}}),
    );
    assert!(fits(&bound_here, &claim(json!({}))));
    let old_claim = volume(
        json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "u0"}}}),
    );
    assert!(!fits(&old_claim, &claim(json!({}))));
    let other = volume(json!({"spec": {"claimRef": {"namespace": "other", "name": "data"}}}));
    assert!(!fits(&other, &claim(json!({}))));
}

#[test]
fn local_path_volumes_are_pinned_to_the_node_and_named_after_the_claim() {
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "local-path"}, "provisioner": localpath::PROVISIONER,
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .unwrap();
    let c = claim(json!({"spec": {"storageClassName": "local-path"}}));
    let v = localpath::volume(Path::new("/var/lib/skiff/storage"), &c, &class, "node-2");
    assert_eq!(v.name_any(), "pvc-u1");
    let spec = v.spec.as_ref().unwrap();
    assert_eq!(
        spec.host_path.as_ref().unwrap().path,
        "/var/lib/skiff/storage/pvc-u1_default_data"
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("u1"));
    let term = &spec
        .node_affinity
        .as_ref()
        .unwrap()
        .required
        .as_ref()
        .unwrap()
        .node_selector_terms[0];
    assert_eq!(
        term.match_expressions.as_ref().unwrap()[0]
            .values
            .as_deref(),
        Some(&["node-2".to_string()][..])
    );
    // It fits its own claim, so a later pass keeps the binding.
    assert!(fits(&v, &c));
}

#[test]
fn only_directories_the_provisioner_made_under_its_base_are_removed() {
    let base = tempfile::tempdir().unwrap();
    let made = base.path().join("pvc-u1_default_data");
    std::fs::create_dir_all(made.join("sub")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign = volume(
        json!({"spec": {"hostPath": {"path": elsewhere.path().to_string_lossy()}},
        "metadata": {"annotations": {"pv.kubernetes.io/provisioned-by": localpath::PROVISIONER}}}),
    );
    localpath::remove_directory(base.path(), &foreign);
    assert!(elsewhere.path().exists(), "not under the base: kept");
    let not_ours = volume(json!({"spec": {"hostPath": {"path": made.to_string_lossy()}}}));
    localpath::remove_directory(base.path(), &not_ours);
    assert!(made.exists(), "not provisioned by us: kept");
    let ours = volume(
        json!({"spec": {"hostPath": {"path": made.to_string_lossy()}},
        "metadata": {"annotations": {"pv.kubernetes.io/provisioned-by": localpath::PROVISIONER}}}),
    );
    localpath::remove_directory(base.path(), &ours);
    assert!(!made.exists());
}
