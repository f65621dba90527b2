//! VolumeBinding, for claims that already exist: a pod's claims must exist,
//! immediate-binding claims must be bound, and a bound volume's node
//! affinity must admit the node. (Binding and provisioning on the
//! scheduler's decision, WaitForFirstConsumer, is left to a volume
//! controller; such claims do not restrict the node here.)

use crate::framework::{relevant, Cycle, Plugin, Rejection, Relevance};
use crate::nodeinfo::NodeInfo;
use crate::plugins::node_affinity::selector_matches;
use k8s_openapi::api::core::v1::NodeSelector;

pub struct VolumeBinding;

const NAME: &str = "VolumeBinding";

/// The node affinities of the pod's bound volumes.
struct Bound(Vec<NodeSelector>);

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filters(&self) -> bool {
        true
    }

    fn pre_filter(&self, cx: &mut Cycle) -> Result<Relevance, Rejection> {
        let mut affinities = Vec::new();
        let mut unbound_immediate = false;
        for v in cx.pod.spec().volumes.iter().flatten() {
            let Some(src) = &v.persistent_volume_claim else {
                continue;
            };
            let key = format!("{}/{}", cx.pod.namespace, src.claim_name);
            let Some(claim) = cx.cache.claims.get(&key) else {
                return Err(Rejection::unresolvable(format!(
                    "persistentvolumeclaim \"{}\" not found",
                    src.claim_name
                )));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(Rejection::unresolvable(format!(
                    "persistentvolumeclaim \"{}\" is being deleted",
                    src.claim_name
                )));
            }
            let spec = claim.spec.as_ref();
            match spec
                .and_then(|s| s.volume_name.as_deref())
                .filter(|n| !n.is_empty())
            {
                Some(volume) => {
                    if let Some(required) =
                        cx.cache.volumes.get(volume).and_then(|pv| {
                            pv.spec.as_ref()?.node_affinity.as_ref()?.required.clone()
                        })
                    {
                        affinities.push(required);
                    }
                }
                None => {
                    let class = spec
                        .and_then(|s| s.storage_class_name.as_deref())
                        .unwrap_or("");
                    let waits = cx.cache.classes.get(class).is_some_and(|c| {
                        c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
                    });
                    unbound_immediate |= !waits;
                }
            }
        }
        if unbound_immediate {
            return Err(Rejection::unresolvable(
                "pod has unbound immediate PersistentVolumeClaims",
            ));
        }
        let run = relevant(!affinities.is_empty());
        cx.put(NAME, Bound(affinities));
        Ok(run)
    }

    fn filter(&self, cx: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(Bound(affinities)) = cx.get::<Bound>(NAME) else {
            return Ok(());
        };
        if affinities.iter().all(|a| selector_matches(a, node)) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(
                "node(s) had volume node affinity conflict",
            ))
        }
    }
}
