//! A StatefulSet's template history in ControllerRevisions, as upstream's
//! getStatefulSetRevisions and truncateHistory: each revision, named
//! `<set>-<hash>` and labelled with the template's labels and
//! `controller.kubernetes.io/hash`, holds the patch that restores its
//! template. The update revision is the one holding the set's template now
//! (created, or an older equal one renumbered to the top, which is a
//! rollback); the current revision is the one status names, which pods not
//! yet updated run. Revisions no pod runs go beyond revisionHistoryLimit.

use super::identity::revision_of;
use super::{unless_gone, Ctx};
use crate::deployment::util::template_hash;
use crate::pods;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::ResourceExt;
use skiff_machinery::client::CachedPod;
use std::collections::HashSet;
use std::sync::Arc;

/// The label a revision carries its hash in (upstream's ControllerRevisionHashLabel).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Hash collisions tolerated in one sync before giving up.
const MAX_COLLISIONS: i32 = 10;

pub struct Revisions {
    pub current: ControllerRevision,
    pub update: ControllerRevision,
    /// All the set's revisions, oldest first (before any created now).
    pub all: Vec<ControllerRevision>,
    pub collision_count: i32,
}

impl Revisions {
    pub fn current_template(&self) -> Option<PodTemplateSpec> {
        template_of(&self.current)
    }

    pub fn update_template(&self) -> Option<PodTemplateSpec> {
        template_of(&self.update)
    }
}

fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    pods::template_of_patch(&rev.data.as_ref()?.0)
}

fn same_data(a: &ControllerRevision, b: &serde_json::Value) -> bool {
    a.data.as_ref().is_some_and(|d| &d.0 == b)
}

/// The set's revisions (claimed: adopted orphans it selects, released ones
/// it no longer does), oldest first.
async fn list(set: &StatefulSet, ctx: &Ctx) -> Result<Vec<ControllerRevision>, kube::Error> {
    let ns = set.namespace().unwrap_or_default();
    let selector = pods::selector_of(
        &set.spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default(),
    );
    let candidates = crate::resources::owned_or_orphaned::<ControllerRevision>(
        &set.uid().unwrap_or_default(),
        &ns,
    );
    let mut revs: Vec<ControllerRevision> = pods::claim(&ctx.client, set, &selector, candidates)
        .await?
        .into_iter()
        .map(|r| (*r).clone())
        .collect();
    // Upstream's SortControllerRevisions: by number, then age, then name.
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then(
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp),
            )
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    Ok(revs)
}

/// The current and update revisions, creating or renumbering as needed.
pub async fn revisions(set: &StatefulSet, ctx: &Ctx) -> Result<Revisions, kube::Error> {
    let all = list(set, ctx).await?;
    let ns = set.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let patch = pods::revision_patch(&template);
    let next = all.last().map_or(1, |r| r.revision + 1);
    let mut collision_count = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let equal = all.iter().rev().find(|r| same_data(r, &patch));
    let update = match equal {
        // Unchanged since the last revision.
        Some(e) if all.last().map(|l| l.name_any()) == Some(e.name_any()) => e.clone(),
        // Back to an older template: that revision becomes the newest.
        Some(e) => {
            let mut e = e.clone();
            e.revision = next;
            api.replace(&e.name_any(), &PostParams::default(), &e)
                .await?
        }
        None => {
            let mut attempt = 0;
            loop {
                let rev = new_revision(set, &template, &patch, next, collision_count);
                match api.create(&PostParams::default(), &rev).await {
                    Ok(created) => break created,
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        let existing = api.get(&rev.name_any()).await?;
                        if same_data(&existing, &patch) {
                            break existing;
                        }
                        // Another template under this name: hash again.
                        collision_count += 1;
                        attempt += 1;
                        if attempt > MAX_COLLISIONS {
                            return Err(kube::Error::Api(e));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let wanted = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = all
        .iter()
        .find(|r| wanted.as_deref() == Some(r.name_any().as_str()))
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok(Revisions {
        current,
        update,
        all,
        collision_count,
    })
}

/// Revision `revision` of the set's template (upstream's newRevision).
fn new_revision(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    patch: &serde_json::Value,
    revision: i64,
    collision_count: i32,
) -> ControllerRevision {
    let hash = template_hash(template, Some(collision_count).filter(|c| *c > 0));
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", set.name_any())),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: set.metadata.annotations.clone(),
            owner_references: Some(vec![pods::owner_ref(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(patch.clone())),
        revision,
    }
}

/// Deletes the oldest revisions beyond revisionHistoryLimit that are not
/// live: neither current, nor update, nor run by a pod.
pub async fn truncate(
    set: &StatefulSet,
    revs: &Revisions,
    pods: &[Arc<CachedPod>],
    ctx: &Ctx,
) -> Result<(), kube::Error> {
    let mut live: HashSet<String> = pods.iter().map(|p| revision_of(p).to_string()).collect();
    live.insert(revs.current.name_any());
    live.insert(revs.update.name_any());
    let history: Vec<&ControllerRevision> = revs
        .all
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    if limit < 0 || history.len() <= limit as usize {
        return Ok(());
    }
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    for rev in &history[..history.len() - limit as usize] {
        unless_gone(api.delete(&rev.name_any(), &DeleteParams::default()).await)?;
    }
    Ok(())
}
