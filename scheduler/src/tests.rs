//! The algorithm in process, on hand-made nodes and pods: the decisions of
//! the plugins the integration tests do not reach (scores, cordons,
//! volumes), and how a profile's configuration changes them.

use crate::cache::Cache;
use crate::config::Configuration;
use crate::framework::Profile;
use crate::podinfo::PodInfo;
use crate::schedule::{Algorithm, Decision};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use serde_json::{json, Value};
use skiff_machinery::client::CachedPod;
use std::sync::Arc;

fn node(name: &str, cpu: &str, extra: Value) -> Arc<Node> {
    let resources = json!({"cpu": cpu, "memory": "16Gi", "pods": "110"});
    let mut n = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources}
    });
    merge(&mut n, extra);
    Arc::new(serde_json::from_value(n).unwrap())
}

fn pod(name: &str, spec: Value) -> Arc<PodInfo> {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}
    });
    merge(&mut p["spec"], spec);
    Arc::new(PodInfo::new(Arc::new(
        serde_json::from_value::<CachedPod>(p).unwrap(),
    )))
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(t), Value::Object(e)) = (target, extra) {
        for (k, v) in e {
            match t.get_mut(&k) {
                Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                _ => {
                    t.insert(k, v);
                }
            }
        }
    }
}

fn default_profile() -> Profile {
    Configuration::default().profiles().unwrap().remove(0)
}

fn decide(profile: &Profile, cache: &Cache, p: &PodInfo) -> Result<String, String> {
    match Algorithm::default().schedule(profile, cache, p) {
        Decision::Node(n) => Ok(n),
        Decision::NoFit(f) => Err(f.message()),
        Decision::NoNodes => Err("no nodes".into()),
    }
}

#[test]
fn least_allocated_spreads_and_most_allocated_packs() {
    let mut cache = Cache::default();
    cache.set_node(node("busy", "8", json!({})));
    cache.set_node(node("idle", "8", json!({})));
    cache.set_pod(pod("existing", json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "6", "memory": "8Gi"}}}]})), "busy");
    let p = pod("new", json!({}));
    assert_eq!(decide(&default_profile(), &cache, &p).unwrap(), "idle");

    let packer = Configuration::parse(
        "profiles: [{plugins: {score: {disabled: [{name: '*'}], enabled: [{name: NodeResourcesFit}]}}, pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: MostAllocated}}}]}]",
    )
    .unwrap()
    .profiles()
    .unwrap()
    .remove(0);
    assert_eq!(decide(&packer, &cache, &p).unwrap(), "busy");
}

#[test]
fn preferences_steer_between_feasible_nodes() {
    let mut cache = Cache::default();
    cache.set_node(node("plain", "8", json!({})));
    cache.set_node(node(
        "ssd",
        "8",
        json!({"metadata": {"labels": {"disk": "ssd"}}}),
    ));
    cache.set_node(node("soft-tainted", "8", json!({"metadata": {"labels": {"disk": "ssd"}}, "spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}})));
    let prefers_ssd = pod(
        "p",
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
        ]}}}),
    );
    // Both ssd nodes match; the untolerated PreferNoSchedule taint tips it.
    assert_eq!(
        decide(&default_profile(), &cache, &prefers_ssd).unwrap(),
        "ssd"
    );
}

#[test]
fn preferred_pod_affinity_and_image_locality_score() {
    let mut cache = Cache::default();
    cache.set_node(node("a", "8", json!({})));
    cache.set_node(node("b", "8", json!({"status": {"images": [{"names": ["registry.example/big:1"], "sizeBytes": 900_000_000}]}})));
    let db: CachedPod = serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default", "uid": "db", "labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    cache.set_pod(Arc::new(PodInfo::new(Arc::new(db))), "a");
    let near_db = pod(
        "web",
        json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}}}}
        ]}}}),
    );
    assert_eq!(decide(&default_profile(), &cache, &near_db).unwrap(), "a");
    let big = pod(
        "big",
        json!({"containers": [{"name": "c", "image": "registry.example/big:1"}]}),
    );
    assert_eq!(decide(&default_profile(), &cache, &big).unwrap(), "b");
}

#[test]
fn cordoned_nodes_and_missing_claims_are_reported() {
    let mut cache = Cache::default();
    cache.set_node(node(
        "cordoned",
        "8",
        json!({"spec": {"unschedulable": true}}),
    ));
    let p = pod("p", json!({}));
    assert_eq!(
        decide(&default_profile(), &cache, &p).unwrap_err(),
        "0/1 nodes are available: 1 node(s) were unschedulable."
    );
    cache.set_node(node("open", "8", json!({})));
    let with_claim = pod(
        "c",
        json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}),
    );
    assert_eq!(
        decide(&default_profile(), &cache, &with_claim).unwrap_err(),
        "0/2 nodes are available: persistentvolumeclaim \"data\" not found."
    );
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"volumeName": "pv1"}})).unwrap();
    cache.claims.insert("default/data".into(), Arc::new(claim));
    let pv = serde_json::from_value(json!({"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["cordoned"]}]}]}}}})).unwrap();
    cache.volumes.insert("pv1".into(), Arc::new(pv));
    assert_eq!(
        decide(&default_profile(), &cache, &with_claim).unwrap_err(),
        "0/2 nodes are available: 1 node(s) had volume node affinity conflict, 1 node(s) were unschedulable."
    );
}
