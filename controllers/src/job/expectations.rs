//! What the Job controller waits to see in its pod cache before it acts on a
//! Job again (upstream's expectations and finalizer expectations): pods it
//! created, pods it deleted, and finalizers it removed. Acting on a cache
//! that has not caught up would create pods twice or count a pod twice.

use super::pods::{controller_of, has_finalizer};
use kube::ResourceExt;
use skiff_machinery::client::CachedPod;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upstream gives up waiting after 5 minutes; a lost watch event then
/// stalls a Job no longer than this.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Pending {
    /// Names of pods created and not yet seen.
    created: HashSet<String>,
    /// Uids of pods deleted, not yet seen deleting or gone.
    deleted: HashSet<String>,
    /// Uids of pods whose tracking finalizer was removed, not yet seen so.
    finalizers: HashSet<String>,
    since: Option<Instant>,
}

/// Keyed by the Job's uid.
#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Pending>>);

impl Expectations {
    fn with<T>(&self, job: &str, f: impl FnOnce(&mut Pending) -> T) -> T {
        let mut map = self.0.lock().unwrap();
        let p = map.entry(job.to_string()).or_default();
        p.since = Some(Instant::now());
        f(p)
    }

    pub fn expect_created(&self, job: &str, names: impl IntoIterator<Item = String>) {
        self.with(job, |p| p.created.extend(names));
    }

    pub fn expect_deleted(&self, job: &str, uids: impl IntoIterator<Item = String>) {
        self.with(job, |p| p.deleted.extend(uids));
    }

    pub fn expect_finalizers_removed(&self, job: &str, uids: impl IntoIterator<Item = String>) {
        self.with(job, |p| p.finalizers.extend(uids));
    }

    /// A failed call: nothing will be observed for it.
    pub fn finalizer_not_removed(&self, job: &str, uid: &str) {
        if let Some(p) = self.0.lock().unwrap().get_mut(job) {
            p.finalizers.remove(uid);
        }
    }

    /// A pod event, from the stream that fills the cache.
    pub fn observe(&self, pod: &CachedPod) {
        let Some(owner) = controller_of(&pod.metadata) else {
            return;
        };
        if let Some(p) = self.0.lock().unwrap().get_mut(&owner.uid) {
            p.created.remove(&pod.name_any());
        }
    }

    /// Drops what the cache now shows, and returns the uids whose finalizer
    /// removal is still unseen; `None` while a create or delete is unseen.
    pub fn check(&self, job: &str, namespace: &str) -> (bool, HashSet<String>) {
        let mut map = self.0.lock().unwrap();
        let Some(p) = map.get_mut(job) else {
            return (true, HashSet::new());
        };
        if p.since.is_some_and(|t| t.elapsed() > TIMEOUT) {
            map.remove(job);
            return (true, HashSet::new());
        }
        let by_uid: HashMap<String, std::sync::Arc<CachedPod>> =
            crate::resources::owned_by::<CachedPod>(job)
                .into_iter()
                .filter(|x| x.metadata.namespace.as_deref() == Some(namespace))
                .map(|x| (x.uid().unwrap_or_default(), x))
                .collect();
        let names: HashSet<String> = by_uid.values().map(|x| x.name_any()).collect();
        p.created.retain(|n| !names.contains(n));
        p.deleted.retain(|u| {
            by_uid
                .get(u)
                .is_some_and(|x| x.metadata.deletion_timestamp.is_none())
        });
        p.finalizers
            .retain(|u| by_uid.get(u).is_some_and(|x| has_finalizer(x)));
        let satisfied = p.created.is_empty() && p.deleted.is_empty();
        let unseen = p.finalizers.clone();
        if satisfied && unseen.is_empty() {
            map.remove(job);
        }
        (satisfied, unseen)
    }

    pub fn forget(&self, job: &str) {
        self.0.lock().unwrap().remove(job);
    }
}
