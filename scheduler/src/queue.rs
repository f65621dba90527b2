//! The scheduling queue, as upstream's: an active queue ordered by priority
//! then arrival, a backoff queue for pods that failed recently (1 s doubling
//! to 10 s), and an unschedulable pool whose pods return only when a
//! cluster event could make them fit (or after five minutes, as upstream
//! flushes them), never by polling.

use crate::podinfo::PodInfo;
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often (upstream's
/// podMaxInUnschedulablePodsDuration).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled.
    InFlight,
}

struct Queued {
    info: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    /// Arrival order, for equal priorities.
    seq: u64,
    /// Bumped on every move, so stale heap entries are recognised.
    version: u64,
    backoff_until: Instant,
    unschedulable_since: Instant,
    /// The move-request counter when this attempt began.
    cycle: u64,
    /// The plugins that rejected it last time.
    rejected_by: Vec<&'static str>,
}

#[derive(PartialEq, Eq)]
struct HeapEntry {
    priority: i32,
    seq: u64,
    uid: String,
    version: u64,
}

impl Ord for HeapEntry {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// How an attempt ended.
pub enum Outcome {
    Scheduled,
    /// No node fits, for the reasons of these plugins: wait for a cluster
    /// event that concerns one of them.
    Unschedulable(Vec<&'static str>),
    /// Something went wrong (an API error): retry after backoff.
    Error,
}

#[derive(Default)]
pub struct Queue {
    pods: HashMap<String, Queued>,
    active: BinaryHeap<HeapEntry>,
    backoff: BTreeSet<(Instant, String)>,
    next_seq: u64,
    /// Counts cluster events that moved pods; an attempt that began before
    /// the latest one goes to backoff, not to the unschedulable pool, since
    /// the event may have made room it did not see.
    moves: u64,
}

impl Queue {
    /// A new or changed pending pod.
    pub fn add(&mut self, info: Arc<PodInfo>) {
        let uid = info.uid.clone();
        match self.pods.get_mut(&uid) {
            Some(q) => {
                // A change to what scheduling reads may make an unschedulable
                // pod fit: retry it. Status updates (ours included) do not.
                let (old, new) = (&q.info.pod, &info.pod);
                let relevant = old.spec != new.spec
                    || old.metadata.labels != new.metadata.labels
                    || old.metadata.annotations != new.metadata.annotations;
                q.info = info;
                if q.place == Place::Unschedulable && relevant {
                    self.requeue(&uid);
                }
            }
            None => {
                self.next_seq += 1;
                let now = Instant::now();
                self.pods.insert(
                    uid.clone(),
                    Queued {
                        info,
                        place: Place::Active,
                        attempts: 0,
                        seq: self.next_seq,
                        version: 0,
                        backoff_until: now,
                        unschedulable_since: now,
                        cycle: 0,
                        rejected_by: Vec::new(),
                    },
                );
                self.push_active(&uid);
            }
        }
    }

    pub fn delete(&mut self, uid: &str) {
        if let Some(q) = self.pods.remove(uid) {
            if q.place == Place::Backoff {
                self.backoff.remove(&(q.backoff_until, uid.to_string()));
            }
        }
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    fn push_active(&mut self, uid: &str) {
        let q = self.pods.get_mut(uid).expect("queued");
        q.place = Place::Active;
        q.version += 1;
        self.active.push(HeapEntry {
            priority: q.info.priority,
            seq: q.seq,
            uid: uid.to_string(),
            version: q.version,
        });
    }

    /// To active, or to backoff while its backoff lasts.
    fn requeue(&mut self, uid: &str) {
        let now = Instant::now();
        let q = self.pods.get_mut(uid).expect("queued");
        if q.backoff_until > now {
            q.place = Place::Backoff;
            q.version += 1;
            self.backoff.insert((q.backoff_until, uid.to_string()));
        } else {
            self.push_active(uid);
        }
    }

    /// The next pod to schedule, with its attempt's cycle; moves pods whose
    /// backoff ended and flushes long-unschedulable ones first.
    pub fn pop(&mut self) -> Option<Arc<PodInfo>> {
        let now = Instant::now();
        while let Some((until, uid)) = self.backoff.first().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop_first();
            if self
                .pods
                .get(&uid)
                .is_some_and(|q| q.place == Place::Backoff)
            {
                self.push_active(&uid);
            }
        }
        while let Some(e) = self.active.pop() {
            let Some(q) = self.pods.get_mut(&e.uid) else {
                continue;
            };
            if q.place != Place::Active || q.version != e.version {
                continue;
            }
            q.place = Place::InFlight;
            q.attempts += 1;
            q.cycle = self.moves;
            return Some(q.info.clone());
        }
        None
    }

    /// When the earliest backoff ends, if any pod waits in backoff.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.first().map(|(t, _)| *t)
    }

    /// Records how an attempt ended.
    pub fn done(&mut self, uid: &str, outcome: Outcome) {
        let moves = self.moves;
        let Some(q) = self.pods.get_mut(uid) else {
            return;
        };
        if q.place != Place::InFlight {
            return;
        }
        let rejected_by = match outcome {
            Outcome::Scheduled => {
                self.pods.remove(uid);
                return;
            }
            Outcome::Unschedulable(plugins) => Some(plugins),
            Outcome::Error => None,
        };
        let shift = q.attempts.saturating_sub(1).min(8);
        q.backoff_until = Instant::now() + (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF);
        if let Some(plugins) = rejected_by {
            q.rejected_by = plugins;
            // An event during the attempt may have made room it did not see.
            if q.cycle >= moves {
                q.place = Place::Unschedulable;
                q.unschedulable_since = Instant::now();
                q.version += 1;
                return;
            }
        }
        self.requeue(uid);
    }

    /// A cluster event that may let unschedulable pods fit: retry those
    /// turned down by a plugin the event concerns (`None`: any plugin).
    pub fn move_unschedulable(&mut self, concerns: Option<&[&str]>) {
        self.moves += 1;
        let waiting: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, q)| {
                q.place == Place::Unschedulable
                    && concerns.is_none_or(|c| q.rejected_by.iter().any(|p| c.contains(p)))
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in waiting {
            self.requeue(&uid);
        }
    }

    /// Retries pods unschedulable for longer than [`MAX_UNSCHEDULABLE`].
    pub fn flush_stale(&mut self) {
        let stale: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, q)| {
                q.place == Place::Unschedulable
                    && q.unschedulable_since.elapsed() > MAX_UNSCHEDULABLE
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in stale {
            self.requeue(&uid);
        }
    }

    /// Pods per queue: (active, backoff, unschedulable).
    pub fn lengths(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for q in self.pods.values() {
            match q.place {
                Place::Active | Place::InFlight => n.0 += 1,
                Place::Backoff => n.1 += 1,
                Place::Unschedulable => n.2 += 1,
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_machinery::client::CachedPod;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        let p: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "image": "x"}]}
        }))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(p)))
    }

    #[test]
    fn higher_priority_first_then_arrival() {
        let mut q = Queue::default();
        q.add(pod("a", 0));
        q.add(pod("b", 10));
        q.add(pod("c", 0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|p| p.name.clone())).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event() {
        let mut q = Queue::default();
        q.add(pod("a", 0));
        let a = q.pop().unwrap();
        q.done(&a.uid, Outcome::Unschedulable(vec!["NodeResourcesFit"]));
        assert!(q.pop().is_none());
        assert_eq!(q.lengths(), (0, 0, 1));
        q.move_unschedulable(None);
        // Still within its first 1 s backoff.
        assert_eq!(q.lengths(), (0, 1, 0));
        assert!(q.next_backoff().is_some());
    }

    #[test]
    fn an_event_during_the_attempt_sends_the_pod_to_backoff() {
        let mut q = Queue::default();
        q.add(pod("a", 0));
        let a = q.pop().unwrap();
        q.move_unschedulable(None);
        q.done(&a.uid, Outcome::Unschedulable(vec!["NodeResourcesFit"]));
        assert_eq!(q.lengths(), (0, 1, 0));
    }
}
