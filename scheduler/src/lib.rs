//! skiff's scheduler: an ordinary API client, like kube-scheduler. It
//! watches pods and nodes, queues the pending pods that name one of its
//! profiles, decides with filter and score plugins, and binds through
//! `pods/binding`; pods that fit nowhere get the upstream-shaped condition
//! and event, and may preempt lower-priority pods.

pub mod api;
pub mod cache;
pub mod config;
pub mod framework;
mod informer;
pub mod metrics;
pub mod nodeinfo;
pub mod plugins;
pub mod podinfo;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule;
#[cfg(test)]
mod tests;

use cache::Cache;
use framework::Profile;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{Client, ResourceExt};
use podinfo::PodInfo;
use queue::{Outcome, Queue};
use schedule::{Algorithm, Decision};
use skiff_machinery::client::events::Recorder;
use skiff_machinery::client::CachedPod;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

pub use config::Configuration;

/// Bindings in flight at once: enough to keep the API server busy, few
/// enough that a slow server pushes back on the loop.
const BINDS_IN_FLIGHT: usize = 64;

pub struct Options {
    pub config: Configuration,
    /// This scheduler's name in the leader Lease and in its events.
    pub identity: String,
    pub metrics: Arc<metrics::Metrics>,
}

/// Runs the scheduler until it fails: campaigns for the `kube-scheduler`
/// Lease in kube-system (unless `leaderElection.leaderElect: false`) and
/// schedules while it holds it.
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let profiles = Arc::new(opts.config.profiles().map_err(anyhow::Error::msg)?);
    let leader_elect = opts
        .config
        .leader_election
        .as_ref()
        .and_then(|l| l.leader_elect)
        .unwrap_or(true);
    let schedule = || {
        Scheduler::run(
            client.clone(),
            profiles.clone(),
            opts.identity.clone(),
            opts.metrics.clone(),
        )
    };
    if leader_elect {
        skiff_machinery::client::leader::Election::new(
            client.clone(),
            "kube-system",
            "kube-scheduler",
            &opts.identity,
        )
        .run(schedule)
        .await
    } else {
        schedule().await
    }
}

struct State {
    cache: Cache,
    queue: Queue,
}

struct Scheduler {
    client: Client,
    profiles: Arc<Vec<Profile>>,
    state: Mutex<State>,
    wake: Notify,
    metrics: Arc<metrics::Metrics>,
    recorder: Recorder,
    binds: Arc<Semaphore>,
}

impl Scheduler {
    async fn run(
        client: Client,
        profiles: Arc<Vec<Profile>>,
        identity: String,
        metrics: Arc<metrics::Metrics>,
    ) -> anyhow::Result<()> {
        let s = Arc::new(Scheduler {
            recorder: Recorder::start(client.clone(), "default-scheduler", &identity),
            client: client.clone(),
            profiles,
            state: Mutex::new(State {
                cache: Cache::default(),
                queue: Queue::default(),
            }),
            wake: Notify::new(),
            metrics,
            binds: Arc::new(Semaphore::new(BINDS_IN_FLIGHT)),
        });
        // Dropping the set (when leadership ends) stops the watches.
        let mut watches = tokio::task::JoinSet::new();
        let (nodes_synced, pods_synced);
        {
            let s2 = s.clone();
            nodes_synced =
                informer::spawn::<Node>(&mut watches, &client, move |n, gone| s2.on_node(n, gone));
            let s2 = s.clone();
            pods_synced = informer::spawn::<CachedPod>(&mut watches, &client, move |p, gone| {
                s2.on_pod(p, gone)
            });
            let s2 = s.clone();
            informer::spawn::<Namespace>(&mut watches, &client, move |ns, gone| {
                s2.with_state(|st| {
                    let labels = ns.labels().clone().into_iter().collect();
                    let changed = st.cache.namespaces.get(&ns.name_any()) != Some(&labels);
                    if gone {
                        st.cache.namespaces.remove(&ns.name_any());
                    } else {
                        st.cache.namespaces.insert(ns.name_any(), labels);
                    }
                    if changed {
                        st.queue.move_unschedulable(Some(&["InterPodAffinity"]));
                    }
                })
            });
            let s2 = s.clone();
            informer::spawn::<PersistentVolumeClaim>(&mut watches, &client, move |c, gone| {
                let key = format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any());
                s2.with_state(|st| {
                    if gone {
                        st.cache.claims.remove(&key);
                    } else {
                        st.cache.claims.insert(key, c);
                        st.queue.move_unschedulable(Some(&["VolumeBinding"]));
                    }
                })
            });
            let s2 = s.clone();
            informer::spawn::<PersistentVolume>(&mut watches, &client, move |v, gone| {
                s2.with_state(|st| {
                    if gone {
                        st.cache.volumes.remove(&v.name_any());
                    } else {
                        st.cache.volumes.insert(v.name_any(), v);
                        st.queue.move_unschedulable(Some(&["VolumeBinding"]));
                    }
                })
            });
            let s2 = s.clone();
            informer::spawn::<StorageClass>(&mut watches, &client, move |c, gone| {
                s2.with_state(|st| {
                    if gone {
                        st.cache.classes.remove(&c.name_any());
                    } else {
                        st.cache.classes.insert(c.name_any(), c);
                        st.queue.move_unschedulable(Some(&["VolumeBinding"]));
                    }
                })
            });
            let s2 = s.clone();
            informer::spawn::<PodDisruptionBudget>(&mut watches, &client, move |b, gone| {
                let key = format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any());
                s2.with_state(|st| {
                    if gone {
                        st.cache.budgets.remove(&key);
                    } else {
                        st.cache.budgets.insert(key, b);
                    }
                })
            });
        }
        // Decide only once the cluster is known, as upstream waits for its caches.
        let _ = nodes_synced.await;
        let _ = pods_synced.await;
        tracing::info!("scheduler caches synced");
        s.schedule_loop().await
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut st);
        drop(st);
        self.wake.notify_one();
        out
    }

    fn ours(&self, pod: &PodInfo) -> bool {
        self.profiles
            .iter()
            .any(|p| p.scheduler_name == pod.scheduler_name())
    }

    fn on_node(&self, node: Arc<Node>, gone: bool) {
        self.with_state(|st| {
            let name = node.name_any();
            if gone {
                st.cache.remove_node(&name);
                return;
            }
            // Heartbeats change nothing a plugin reads; a new node, or new
            // labels, taints, capacity or images, may let pods fit.
            let relevant = st.cache.node(&name).is_none_or(|old| {
                let (a, b) = (&old.node, &node);
                a.metadata.labels != b.metadata.labels
                    || a.spec != b.spec
                    || a.status.as_ref().map(|s| (&s.allocatable, &s.images))
                        != b.status.as_ref().map(|s| (&s.allocatable, &s.images))
            });
            st.cache.set_node(node);
            if relevant {
                st.queue.move_unschedulable(None);
            }
        })
    }

    fn on_pod(&self, pod: Arc<CachedPod>, gone: bool) {
        let info = Arc::new(PodInfo::new(pod));
        self.with_state(|st| {
            let uid = info.uid.clone();
            if gone || info.is_terminal() {
                st.queue.delete(&uid);
                st.cache.clear_nomination(&uid);
                if st.cache.remove_pod(&uid).is_some() {
                    st.queue.move_unschedulable(None);
                }
                return;
            }
            if let Some(node) = info.node_name() {
                st.queue.delete(&uid);
                let node = node.to_string();
                let new = !st.cache.is_placed(&uid);
                st.cache.set_pod(info, &node);
                if new {
                    // A pod placed by someone else may satisfy affinity or spread.
                    st.queue
                        .move_unschedulable(Some(&["InterPodAffinity", "PodTopologySpread"]));
                }
                return;
            }
            // Assumed by us while its binding is in flight: not pending any more.
            if st.cache.is_placed(&uid) || info.terminating || !self.ours(&info) {
                return;
            }
            st.queue.add(info);
        })
    }

    async fn schedule_loop(self: Arc<Self>) -> anyhow::Result<()> {
        let mut algorithm = Algorithm::default();
        let mut last_flush = Instant::now();
        loop {
            let (popped, next_backoff) = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if last_flush.elapsed() > Duration::from_secs(30) {
                    st.queue.flush_stale();
                    last_flush = Instant::now();
                }
                *self
                    .metrics
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = st.queue.lengths();
                (st.queue.pop(), st.queue.next_backoff())
            };
            let Some(pod) = popped else {
                let wait = next_backoff
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_secs(30));
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            };
            // Wait for room among the bindings before deciding, so the
            // decision sees every earlier one assumed.
            let permit = self.binds.clone().acquire_owned().await?;
            self.schedule_one(&mut algorithm, pod, permit);
        }
    }

    fn schedule_one(
        self: &Arc<Self>,
        algorithm: &mut Algorithm,
        pod: Arc<PodInfo>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let start = Instant::now();
        let Some(profile) = self
            .profiles
            .iter()
            .find(|p| p.scheduler_name == pod.scheduler_name())
        else {
            return;
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match algorithm.schedule(profile, &st.cache, &pod) {
            Decision::Node(node) => {
                st.cache.assume(pod.clone(), &node);
                drop(st);
                let s = self.clone();
                let profile = profile.scheduler_name.clone();
                tokio::spawn(async move {
                    let result = api::bind(&s.client, &pod, &node).await;
                    drop(permit);
                    s.bound(&profile, pod, node, start, result);
                });
            }
            Decision::NoFit(mut fit) => {
                let candidate = match preemption::find(profile, &st.cache, &pod, &fit) {
                    Ok(c) => {
                        st.cache.nominate(pod.clone(), &c.node);
                        Some(c)
                    }
                    Err(msg) => {
                        fit.post_filter = Some(msg);
                        None
                    }
                };
                st.queue
                    .done(&pod.uid, Outcome::Unschedulable(fit.plugins()));
                drop(st);
                self.metrics.attempt(
                    &profile.scheduler_name,
                    metrics::Result::Unschedulable,
                    start.elapsed(),
                );
                self.report_unschedulable(
                    pod,
                    fit.message(),
                    candidate,
                    &profile.scheduler_name,
                    permit,
                );
            }
            Decision::NoNodes => {
                st.queue
                    .done(&pod.uid, Outcome::Unschedulable(vec!["NoNodes"]));
                drop(st);
                self.metrics.attempt(
                    &profile.scheduler_name,
                    metrics::Result::Unschedulable,
                    start.elapsed(),
                );
                let msg = "no nodes available to schedule pods".to_string();
                self.report_unschedulable(pod, msg, None, &profile.scheduler_name, permit);
            }
        }
    }

    fn bound(
        &self,
        profile: &str,
        pod: Arc<PodInfo>,
        node: String,
        start: Instant,
        result: Result<(), kube::Error>,
    ) {
        match result {
            Ok(()) => {
                self.with_state(|st| st.queue.done(&pod.uid, Outcome::Scheduled));
                self.metrics
                    .attempt(profile, metrics::Result::Scheduled, start.elapsed());
                if let Some(created) = pod.pod.metadata.creation_timestamp.as_ref() {
                    let age = jiff::Timestamp::now().duration_since(created.0);
                    self.metrics.bound(age.unsigned_abs());
                }
                self.recorder.record(
                    &*pod.pod,
                    "Normal",
                    "Scheduled",
                    "Binding",
                    format!("Successfully assigned {} to {node}", pod.key()),
                );
            }
            Err(e) => {
                tracing::warn!(pod = %pod.key(), %node, error = %e, "binding failed");
                self.with_state(|st| {
                    st.cache.forget(&pod.uid);
                    st.queue.done(&pod.uid, Outcome::Error);
                });
                self.metrics
                    .attempt(profile, metrics::Result::Error, start.elapsed());
                self.recorder.record(
                    &*pod.pod,
                    "Warning",
                    "FailedScheduling",
                    "Scheduling",
                    format!("Binding rejected: {e}"),
                );
            }
        }
    }

    fn report_unschedulable(
        self: &Arc<Self>,
        pod: Arc<PodInfo>,
        message: String,
        candidate: Option<preemption::Candidate>,
        profile: &str,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        tracing::debug!(pod = %pod.key(), %message, "unschedulable");
        self.recorder.record(
            &*pod.pod,
            "Warning",
            "FailedScheduling",
            "Scheduling",
            message.clone(),
        );
        let s = self.clone();
        let profile = profile.to_string();
        tokio::spawn(async move {
            let nominated = candidate.as_ref().map(|c| c.node.as_str());
            if let Err(e) = api::mark_unschedulable(&s.client, &pod, &message, nominated).await {
                tracing::debug!(pod = %pod.key(), error = %e, "updating the PodScheduled condition");
            }
            if let Some(c) = &candidate {
                api::preempt(&s.client, &s.recorder, &profile, &pod, c).await;
            }
            drop(permit);
        });
    }
}
