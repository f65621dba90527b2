//! The local-path provisioner (k3s ships one under the same class name): the
//! default StorageClass `local-path`, WaitForFirstConsumer, reclaimPolicy
//! Delete; a claim of it becomes a hostPath volume
//! `<base>/pvc-<uid>_<namespace>_<claim>` (DirectoryOrCreate: the node's
//! agent makes it) pinned to the node of the first pod that uses it, so a
//! pod that comes back finds its data there.

use std::path::Path;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::json;

pub const PROVISIONER: &str = "skiff.dev/local-path";
pub const CLASS: &str = "local-path";

/// Creates the `local-path` class, the cluster's default, unless a class of
/// that name exists (an operator's edits are kept).
pub async fn ensure_class(client: &Client) -> anyhow::Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    if api.get_opt(CLASS).await?.is_some() {
        return Ok(());
    }
    let class: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))?;
    match api.create(&Default::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The volume for `claim` on `node`, already naming its claim.
pub fn volume(
    base: &Path,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
) -> PersistentVolume {
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let ns = claim.namespace().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    let path = base.join(format!("pvc-{uid}_{ns}_{}", claim.name_any()));
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{uid}"),
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.name_any(),
            "hostPath": {"path": path.to_string_lossy(), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": ns, "name": claim.name_any(), "uid": uid,
                "resourceVersion": claim.metadata.resource_version},
        },
    }))
    .expect("a well-formed PersistentVolume")
}

/// Removes the directory of a volume this provisioner made, when it is on
/// this machine (a server that is also the node, or a lab). On another
/// machine it stays: nothing of skiff runs there that would remove it.
pub fn remove_directory(base: &Path, v: &PersistentVolume) {
    let ours = v
        .annotations()
        .get("pv.kubernetes.io/provisioned-by")
        .map(String::as_str)
        == Some(PROVISIONER);
    let Some(path) = v
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| Path::new(&h.path).to_path_buf())
    else {
        return;
    };
    // Only a directory directly under the base, named as we name them.
    let named = path.parent() == Some(base)
        && path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pvc-"));
    if ours && named && path.is_dir() {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "volume directory not removed");
        }
    }
}
