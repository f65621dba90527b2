//! The pod as the shared informer caches it inside `skiff server`: only what
//! the scheduler and the controllers read. A k8s-openapi `Pod` is about
//! 8 KB in memory for a 2.4 KB pod, mostly room for fields that are empty
//! (every Container has room for probes, lifecycle, security context…),
//! and the cache holds one per pod of the cluster. Fields keep their
//! upstream names and shapes, so code reads `pod.spec`, `pod.status` as it
//! would a full Pod; anything not listed here is skipped while decoding.
//!
//! The lists that are the same in every pod of a template (containers,
//! tolerations) are held once and shared by those pods.
//!
//! Decoding is lossy on purpose: a `CachedPod` is never written back. Writes
//! go by name and uid (patches, bindings, deletes), as upstream's do.

use super::compact::fit;
use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, PersistentVolumeClaimVolumeSource, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Arc, LazyLock, Mutex, Weak};

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CachedPod {
    #[serde(default, deserialize_with = "metadata")]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}

impl k8s_openapi::Resource for CachedPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for CachedPod {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    pub scheduler_name: Option<String>,
    pub priority: Option<i32>,
    pub preemption_policy: Option<String>,
    pub overhead: Option<BTreeMap<String, Quantity>>,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "shared_tolerations")]
    pub tolerations: Option<Arc<[Toleration]>>,
    pub affinity: Option<Box<Affinity>>,
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, deserialize_with = "shared_containers")]
    pub containers: Arc<[Container]>,
    #[serde(default, deserialize_with = "shared_init_containers")]
    pub init_containers: Option<Arc<[Container]>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    pub image: Option<String>,
    pub resources: Option<ResourceRequirements>,
    pub ports: Option<Vec<ContainerPort>>,
    /// `Always` marks an init container as a sidecar.
    pub restart_policy: Option<String>,
}

/// A volume by name, with its claim when it is a PersistentVolumeClaim
/// (the only source a controller or the scheduler looks at).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Option<String>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    pub nominated_node_name: Option<String>,
    pub conditions: Option<Vec<PodCondition>>,
    pub container_statuses: Option<Vec<ContainerStatus>>,
    pub init_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<Time>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub restart_count: i32,
    pub state: Option<ContainerState>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ContainerState {
    pub terminated: Option<ContainerStateTerminated>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    #[serde(default)]
    pub exit_code: i32,
    pub finished_at: Option<Time>,
}

/// ObjectMeta without managedFields (half of a stored object), generateName
/// and selfLink: skipped while decoding rather than decoded and dropped.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    finalizers: Option<Vec<String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = Option::<Meta>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        labels: m.labels,
        annotations: m.annotations,
        finalizers: m.finalizers,
        owner_references: m.owner_references,
        ..Default::default()
    })
}

/// Equal lists held once each while some pod holds them, found by a hash
/// of their JSON text (hashed as it is written, nothing kept but the hash).
struct Interner<T> {
    lists: Mutex<HashMap<u64, Weak<[T]>>>,
}

/// Feeds what serde_json writes into a hasher.
struct HashWriter(DefaultHasher);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<T: Serialize + PartialEq> Interner<T> {
    fn new() -> Self {
        Interner {
            lists: Mutex::default(),
        }
    }

    fn share(&self, list: Vec<T>) -> Arc<[T]> {
        let mut hash = HashWriter(DefaultHasher::new());
        if serde_json::to_writer(&mut hash, &list).is_err() {
            return list.into();
        }
        let key = hash.0.finish();
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = lists.get(&key).and_then(Weak::upgrade) {
            // Another list with the same hash is simply not shared.
            return if *held == *list { held } else { list.into() };
        }
        let list: Arc<[T]> = list.into();
        // Forget lists no pod holds any more, before there are many.
        if lists.len() >= 1024 && lists.len().is_power_of_two() {
            lists.retain(|_, l| l.strong_count() > 0);
        }
        lists.insert(key, Arc::downgrade(&list));
        list
    }
}

static CONTAINERS: LazyLock<Interner<Container>> = LazyLock::new(Interner::new);
static TOLERATIONS: LazyLock<Interner<Toleration>> = LazyLock::new(Interner::new);

fn containers(mut list: Vec<Container>) -> Arc<[Container]> {
    list.iter_mut().for_each(|c| fit(&mut c.ports));
    CONTAINERS.share(list)
}

fn shared_containers<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[Container]>, D::Error> {
    Ok(containers(
        Option::<Vec<Container>>::deserialize(d)?.unwrap_or_default(),
    ))
}

fn shared_init_containers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Arc<[Container]>>, D::Error> {
    Ok(Option::<Vec<Container>>::deserialize(d)?.map(containers))
}

fn shared_tolerations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Arc<[Toleration]>>, D::Error> {
    Ok(Option::<Vec<Toleration>>::deserialize(d)?.map(|l| TOLERATIONS.share(l)))
}

/// The cached view of a pod a controller has just built or created, for
/// the helpers it shares with cached pods.
impl From<&k8s_openapi::api::core::v1::Pod> for CachedPod {
    fn from(pod: &k8s_openapi::api::core::v1::Pod) -> CachedPod {
        // Through JSON, as the informer decodes it: the field names and
        // shapes are the Pod's, so this cannot fail (a test checks it).
        serde_json::to_value(pod)
            .and_then(serde_json::from_value)
            .expect("a Pod decodes as a CachedPod")
    }
}

impl CachedPod {
    /// Gives back the spare room serde left in the pod's lists.
    pub fn fit_lists(&mut self) {
        fit(&mut self.metadata.finalizers);
        fit(&mut self.metadata.owner_references);
        if let Some(spec) = &mut self.spec {
            fit(&mut spec.volumes);
            fit(&mut spec.topology_spread_constraints);
        }
        if let Some(status) = &mut self.status {
            fit(&mut status.conditions);
            fit(&mut status.container_statuses);
            fit(&mut status.init_container_statuses);
        }
    }

    /// The condition of `type_`, if the pod reports it.
    pub fn condition(&self, type_: &str) -> Option<&PodCondition> {
        self.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_readers_use_and_skips_the_rest() {
        let pod: CachedPod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                         "generateName": "p-", "labels": {"app": "a"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "rs", "uid": "r", "controller": true}]},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "busybox",
                       "command": ["sleep", "1d"], "env": [{"name": "A", "value": "1"}],
                       "resources": {"requests": {"cpu": "100m"}},
                       "ports": [{"containerPort": 80, "name": "http"}],
                       "livenessProbe": {"exec": {"command": ["true"]}}}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                                 {"name": "cfg", "configMap": {"name": "x"}}],
                     "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "hostIP": "10.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z",
                                       "lastProbeTime": null}],
                       "containerStatuses": [{"name": "c", "restartCount": 2, "ready": true,
                                              "image": "busybox", "imageID": "",
                                              "state": {"terminated": {"exitCode": 3,
                                                  "reason": "Error"}}}]}
        }))
        .unwrap();
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("p"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(meta.managed_fields.is_none() && meta.generate_name.is_none());
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "r");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n"));
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert_eq!(c.ports.as_ref().unwrap()[0].name.as_deref(), Some("http"));
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["cpu"], Quantity("100m".into()));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "d"
        );
        assert!(volumes[1].persistent_volume_claim.is_none());
        assert_eq!(
            spec.tolerations.as_ref().unwrap()[0].toleration_seconds,
            Some(5)
        );
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.42.0.5"));
        assert!(pod
            .condition("Ready")
            .unwrap()
            .last_transition_time
            .is_some());
        let cs = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            3
        );
    }

    #[test]
    fn a_whole_pod_converts() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "uid": "u", "managedFields": [{"manager": "m"}]},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap();
        let cached = CachedPod::from(&pod);
        assert_eq!(cached.metadata.name.as_deref(), Some("web-0"));
        assert!(cached.metadata.managed_fields.is_none());
        assert_eq!(cached.spec.unwrap().volumes.unwrap()[0].name, "data");
        assert_eq!(cached.status.unwrap().phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn pods_of_one_template_share_its_lists() {
        let pod = |name: &str, image: &str| -> CachedPod {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": image}],
                         "tolerations": [{"key": "k", "operator": "Exists"}]}
            }))
            .unwrap()
        };
        let (a, b, c) = (pod("a", "x"), pod("b", "x"), pod("c", "y"));
        let (a, b, c) = (a.spec.unwrap(), b.spec.unwrap(), c.spec.unwrap());
        assert!(Arc::ptr_eq(&a.containers, &b.containers));
        assert!(!Arc::ptr_eq(&a.containers, &c.containers));
        assert_eq!(c.containers[0].image.as_deref(), Some("y"));
        let tolerations = |s: &PodSpec| s.tolerations.clone().unwrap();
        assert!(Arc::ptr_eq(&tolerations(&a), &tolerations(&c)));
    }

    #[test]
    fn is_a_pod_to_kube() {
        use kube::Resource;
        assert_eq!(CachedPod::kind(&()), "Pod");
        assert_eq!(CachedPod::api_version(&()), "v1");
        assert_eq!(CachedPod::plural(&()), "pods");
        let empty: CachedPod = serde_json::from_value(json!({"metadata": null})).unwrap();
        assert_eq!(empty, CachedPod::default());
    }
}
