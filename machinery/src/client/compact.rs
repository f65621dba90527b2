//! Objects as caches keep them: without managedFields, which no cached
//! reader looks at and which are about half of an object, and without spare
//! list capacity. serde fills a list by pushing, so a pod's one
//! ContainerStatus sits in room for four (3 KB instead of 750 B), its five
//! conditions in room for eight: about a third of a cached pod, held for
//! every pod of the cluster by the shared informer.

use k8s_openapi::api::core::v1::{Container, Pod};
use std::any::Any;

/// Drops managedFields, and shrinks the lists of the kinds that are cached
/// by the thousand (pods, whole or as `CachedPod`); other kinds keep theirs.
pub fn for_cache<K: kube::Resource + Any>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    let object = object as &mut dyn Any;
    if let Some(pod) = object.downcast_mut::<Pod>() {
        self::pod(pod);
    } else if let Some(pod) = object.downcast_mut::<super::CachedPod>() {
        pod.fit_lists();
    }
}

/// Gives back a list's spare room.
pub(super) fn fit<T>(list: &mut Option<Vec<T>>) {
    if let Some(list) = list {
        list.shrink_to_fit();
    }
}

fn container(c: &mut Container) {
    fit(&mut c.command);
    fit(&mut c.args);
    fit(&mut c.env);
    fit(&mut c.env_from);
    fit(&mut c.ports);
    fit(&mut c.volume_mounts);
    fit(&mut c.volume_devices);
    fit(&mut c.resize_policy);
}

fn pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    fit(&mut meta.owner_references);
    fit(&mut meta.finalizers);
    if let Some(spec) = &mut pod.spec {
        spec.containers.shrink_to_fit();
        spec.containers.iter_mut().for_each(container);
        fit(&mut spec.init_containers);
        spec.init_containers
            .iter_mut()
            .flatten()
            .for_each(container);
        fit(&mut spec.tolerations);
        fit(&mut spec.volumes);
        fit(&mut spec.image_pull_secrets);
        fit(&mut spec.host_aliases);
        fit(&mut spec.readiness_gates);
        fit(&mut spec.topology_spread_constraints);
        fit(&mut spec.resource_claims);
        fit(&mut spec.scheduling_gates);
    }
    if let Some(status) = &mut pod.status {
        fit(&mut status.conditions);
        fit(&mut status.container_statuses);
        fit(&mut status.init_container_statuses);
        fit(&mut status.ephemeral_container_statuses);
        fit(&mut status.pod_ips);
        fit(&mut status.host_ips);
        fit(&mut status.resource_claim_statuses);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_keep_their_items_without_spare_room() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}]},
            "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}],
                     "tolerations": [{"key": "a"}, {"key": "b"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "c", "image": "i", "imageID": "",
                                              "ready": true, "restartCount": 0}]}
        }))
        .unwrap();
        pod.metadata.managed_fields = Some(vec![Default::default()]);
        let mut before = pod.clone();
        before.metadata.managed_fields = None;
        for_cache(&mut pod);
        assert_eq!(pod, before);
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.container_statuses.as_ref().unwrap().capacity(), 1);
        assert_eq!(status.conditions.as_ref().unwrap().capacity(), 1);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.tolerations.as_ref().unwrap().capacity(), 2);
        assert_eq!(spec.containers[0].env.as_ref().unwrap().capacity(), 1);
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap().capacity(),
            1
        );

        // Other kinds lose only their managedFields.
        let mut node = k8s_openapi::api::core::v1::Node::default();
        node.metadata.managed_fields = Some(vec![Default::default()]);
        for_cache(&mut node);
        assert_eq!(node, Default::default());
    }
}
