//! PersistentVolume binding (upstream's persistentvolume-binder, for what a
//! small cluster needs) and, with it, the local-path provisioner:
//!
//! - a claim with no volume is bound to the smallest Available volume that
//!   fits it (same class, access modes, volume mode, capacity, selector),
//!   volume side first (`claimRef`), then the claim (`volumeName`), then both
//!   statuses, with upstream's annotations;
//! - a claim of the `local-path` class that no volume fits is provisioned
//!   once a pod using it has a node (WaitForFirstConsumer): a hostPath volume
//!   on that node (see `localpath`);
//! - volumes report Available, Bound or Released; a released volume with
//!   reclaimPolicy Delete is deleted (a provisioned one with its directory).

pub mod localpath;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::informers;
use skiff_machinery::client::CachedPod;
use skiff_machinery::quantity::Quantity;

/// Changes arriving within this long of each other are handled together.
const SETTLE: Duration = Duration::from_millis(100);
const MANAGER: &str = "persistentvolume-binder-controller";

pub struct Options {
    /// Where the local-path provisioner makes volumes; None: it is off.
    pub local_path: Option<PathBuf>,
}

struct Caches {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<CachedPod>,
}

pub async fn run(client: Client, opts: Options, recorder: Recorder) -> anyhow::Result<()> {
    let queue = crate::metrics::queue(MANAGER);
    let (claims, claim_changes) = informers::subscribe::<PersistentVolumeClaim>(&client);
    let (volumes, volume_changes) = informers::subscribe::<PersistentVolume>(&client);
    let (classes, class_changes) = informers::subscribe::<StorageClass>(&client);
    let (pods, pod_changes) = informers::subscribe::<CachedPod>(&client);
    for ready in [
        claims.wait_until_ready().await,
        volumes.wait_until_ready().await,
        classes.wait_until_ready().await,
        pods.wait_until_ready().await,
    ] {
        ready?;
    }
    if opts.local_path.is_some() {
        if let Err(e) = localpath::ensure_class(&client).await {
            tracing::warn!(error = %e, "the local-path StorageClass could not be created");
        }
    }
    let caches = Caches {
        claims,
        volumes,
        classes,
        pods,
    };
    // Only pods that use a claim can matter here.
    let pod_changes = pod_changes.filter(|c| {
        let uses_claim = match c {
            informers::Change::Applied(p) | informers::Change::Deleted(p) => {
                claims_of(p).next().is_some()
            }
            informers::Change::Resynced => true,
        };
        std::future::ready(uses_claim)
    });
    let mut changes = futures::stream::select_all([
        claim_changes.map(|_| ()).boxed(),
        volume_changes.map(|_| ()).boxed(),
        class_changes.map(|_| ()).boxed(),
        pod_changes.map(|_| ()).boxed(),
    ]);
    let binder = Binder {
        client,
        opts,
        recorder,
    };
    // Every pass looks at every claim and volume: a cluster has few, and
    // one volume's change can concern any claim.
    while changes.next().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        while futures::FutureExt::now_or_never(changes.next()).is_some() {}
        if let Err(e) = queue.pass(binder.reconcile_all(&caches)).await {
            tracing::warn!(error = %e, "volume binding pass failed");
        }
    }
    Ok(())
}

struct Binder {
    client: Client,
    opts: Options,
    recorder: Recorder,
}

/// The claims a pod's volumes name.
fn claims_of(pod: &CachedPod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

fn class_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn class_of_volume(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn storage(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i128 {
    q.and_then(|q| Quantity::parse(&q.0).ok())
        .map(|q| q.value())
        .unwrap_or(0)
}

fn requested(c: &PersistentVolumeClaim) -> i128 {
    storage(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    )
}

fn capacity(v: &PersistentVolume) -> i128 {
    storage(
        v.spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    )
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether `v` may be bound to `c`: free (or pre-bound to it), same class
/// and volume mode, every access mode the claim asks for, room enough, and
/// the claim's selector matching the volume's labels.
fn fits(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), c.spec.as_ref()) else {
        return false;
    };
    if v.metadata.deletion_timestamp.is_some()
        || matches!(phase_of_volume(v), "Released" | "Failed")
    {
        return false;
    }
    if let Some(r) = &vs.claim_ref {
        let same = r.namespace.as_deref() == c.metadata.namespace.as_deref()
            && r.name.as_deref() == c.metadata.name.as_deref()
            && r.uid
                .as_deref()
                .is_none_or(|u| u.is_empty() || Some(u) == c.metadata.uid.as_deref());
        if !same {
            return false;
        }
    }
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if class_of_volume(v) != class_of_claim(c)
        || mode(vs.volume_mode.as_ref()) != mode(cs.volume_mode.as_ref())
    {
        return false;
    }
    let offered = vs.access_modes.clone().unwrap_or_default();
    if !cs
        .access_modes
        .iter()
        .flatten()
        .all(|m| offered.contains(m))
    {
        return false;
    }
    if capacity(v) < requested(c) {
        return false;
    }
    match &cs.selector {
        None => true,
        Some(sel) => {
            let sel = crate::pods::selector_of(sel);
            sel.is_empty()
                || crate::pods::labels_match(
                    &sel,
                    v.metadata.labels.as_ref().unwrap_or(&Default::default()),
                )
        }
    }
}

impl Binder {
    async fn reconcile_all(&self, caches: &Caches) -> anyhow::Result<()> {
        let claims = caches.claims.state();
        let volumes = caches.volumes.state();
        let by_name: HashMap<String, Arc<PersistentVolume>> =
            volumes.iter().map(|v| (v.name_any(), v.clone())).collect();
        let mut taken: Vec<String> = Vec::new();
        let mut first_error = None;
        for claim in &claims {
            if claim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let r = self
                .sync_claim(caches, claim, &by_name, &volumes, &mut taken)
                .await;
            if let Err(e) = r {
                tracing::warn!(claim = %claim.name_any(), error = %e, "claim not bound");
                first_error.get_or_insert(e);
            }
        }
        let claims_by_key: HashMap<(String, String), &Arc<PersistentVolumeClaim>> = claims
            .iter()
            .map(|c| ((c.namespace().unwrap_or_default(), c.name_any()), c))
            .collect();
        for v in &volumes {
            if taken.contains(&v.name_any()) {
                continue;
            }
            if let Err(e) = self.sync_volume(v, &claims_by_key).await {
                tracing::warn!(volume = %v.name_any(), error = %e, "volume not synced");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn sync_claim(
        &self,
        caches: &Caches,
        claim: &PersistentVolumeClaim,
        by_name: &HashMap<String, Arc<PersistentVolume>>,
        volumes: &[Arc<PersistentVolume>],
        taken: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let bound_to = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|n| !n.is_empty());
        if let Some(name) = bound_to {
            return match by_name.get(name) {
                Some(v) => {
                    let refers = v
                        .spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .is_some_and(|r| r.uid.as_deref() == claim.metadata.uid.as_deref());
                    if !refers {
                        self.bind_volume(v, claim).await?;
                    }
                    taken.push(name.to_string());
                    self.claim_status(claim, "Bound", Some(v)).await
                }
                // Its volume is gone: Lost, as upstream.
                None => self.claim_status(claim, "Lost", None).await,
            };
        }
        let best = volumes
            .iter()
            .filter(|v| !taken.contains(&v.name_any()) && fits(v, claim))
            .min_by_key(|v| capacity(v));
        if let Some(v) = best {
            taken.push(v.name_any());
            let v = self.bind_volume(v, claim).await?;
            self.bind_claim(claim, &v.name_any(), false).await?;
            return self.claim_status(claim, "Bound", Some(&v)).await;
        }
        let class = caches
            .classes
            .state()
            .into_iter()
            .find(|s| s.name_any() == class_of_claim(claim));
        let Some(base) = &self.opts.local_path else {
            return self.claim_status(claim, "Pending", None).await;
        };
        if class.as_ref().map(|c| c.provisioner.as_str()) != Some(localpath::PROVISIONER) {
            return self.claim_status(claim, "Pending", None).await;
        }
        let Some(node) = consumer_node(claim, &caches.pods) else {
            return self.claim_status(claim, "Pending", None).await;
        };
        let class = class.expect("checked above");
        let v = localpath::volume(base, claim, &class, &node);
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let v = match api.create(&Default::default(), &v).await {
            Ok(v) => v,
            Err(kube::Error::Api(e)) if e.code == 409 => api.get(&v.name_any()).await?,
            Err(e) => return Err(e.into()),
        };
        taken.push(v.name_any());
        self.recorder.record(
            claim,
            "Normal",
            "ProvisioningSucceeded",
            "Provisioning",
            format!("Successfully provisioned volume {} on {node}", v.name_any()),
        );
        self.bind_claim(claim, &v.name_any(), true).await?;
        let v = self.volume_status(&v, "Bound").await?;
        self.claim_status(claim, "Bound", Some(&v)).await
    }

    /// The volume side of a binding: its claimRef names the claim.
    async fn bind_volume(
        &self,
        v: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> anyhow::Result<PersistentVolume> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let patch = json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": claim.namespace(), "name": claim.name_any(),
                "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
            }},
        });
        let v = api
            .patch(
                &v.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.volume_status(&v, "Bound").await
    }

    /// The claim side: its volumeName, and upstream's annotations.
    async fn bind_claim(
        &self,
        claim: &PersistentVolumeClaim,
        volume: &str,
        provisioned: bool,
    ) -> anyhow::Result<()> {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &claim.namespace().unwrap_or_default());
        let mut annotations = json!({
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
        });
        if provisioned {
            annotations["volume.kubernetes.io/storage-provisioner"] = json!(localpath::PROVISIONER);
            annotations["volume.beta.kubernetes.io/storage-provisioner"] =
                json!(localpath::PROVISIONER);
        }
        let patch =
            json!({"metadata": {"annotations": annotations}, "spec": {"volumeName": volume}});
        api.patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    async fn claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> anyhow::Result<()> {
        let status = claim.status.as_ref();
        let current = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        let want = match volume {
            Some(v) => json!({
                "phase": phase,
                "accessModes": v.spec.as_ref().and_then(|s| s.access_modes.clone()),
                "capacity": v.spec.as_ref().and_then(|s| s.capacity.clone()),
            }),
            None => json!({"phase": phase}),
        };
        let have = json!({
            "phase": current,
            "accessModes": status.and_then(|s| s.access_modes.clone()),
            "capacity": status.and_then(|s| s.capacity.clone()),
        });
        let same = match volume {
            Some(_) => want == have,
            None => current == phase,
        };
        if same {
            return Ok(());
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &claim.namespace().unwrap_or_default());
        api.patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": want})),
        )
        .await?;
        Ok(())
    }

    async fn volume_status(
        &self,
        v: &PersistentVolume,
        phase: &str,
    ) -> anyhow::Result<PersistentVolume> {
        if phase_of_volume(v) == phase {
            return Ok(v.clone());
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        Ok(api
            .patch_status(
                &v.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"phase": phase}})),
            )
            .await?)
    }

    /// A volume's phase from its claim; a released volume whose policy is
    /// Delete goes (with its directory, if the local-path provisioner made it).
    async fn sync_volume(
        &self,
        v: &PersistentVolume,
        claims: &HashMap<(String, String), &Arc<PersistentVolumeClaim>>,
    ) -> anyhow::Result<()> {
        if v.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let spec = v.spec.as_ref();
        let Some(r) = spec.and_then(|s| s.claim_ref.as_ref()) else {
            self.volume_status(v, "Available").await?;
            return Ok(());
        };
        let key = (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        );
        let claim = claims.get(&key);
        let uid = r.uid.as_deref().unwrap_or("");
        match claim {
            // Pre-bound to a claim not yet made, or being bound: wait.
            None if uid.is_empty() => {
                self.volume_status(v, "Available").await?;
            }
            Some(c) if uid.is_empty() || Some(uid) == c.metadata.uid.as_deref() => {}
            _ => {
                let v = self.volume_status(v, "Released").await?;
                let policy = spec
                    .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                    .unwrap_or("Retain");
                if policy == "Delete" {
                    if let Some(base) = &self.opts.local_path {
                        localpath::remove_directory(base, &v);
                    }
                    let api: Api<PersistentVolume> = Api::all(self.client.clone());
                    match api.delete(&v.name_any(), &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }
}

/// The node a claim's volume should be made on: the scheduler's choice if
/// it recorded one, else the node of a pod that uses the claim.
fn consumer_node(claim: &PersistentVolumeClaim, pods: &Store<CachedPod>) -> Option<String> {
    if let Some(n) = claim
        .annotations()
        .get("volume.kubernetes.io/selected-node")
        .filter(|n| !n.is_empty())
    {
        return Some(n.clone());
    }
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    pods.state()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(&ns) && p.metadata.deletion_timestamp.is_none()
        })
        .filter(|p| claims_of(p).any(|c| c == name))
        .find_map(|p| p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty()))
}

#[cfg(test)]
mod tests;
