//! The controller manager's `/metrics`: one work queue per controller,
//! named and shaped as upstream's, plus reconcile results.
//!
//! Series, by the upstream metric they follow:
//!
//! - `workqueue_adds_total{name}`, `workqueue_depth{name}`,
//!   `workqueue_retries_total{name}`, `workqueue_work_duration_seconds{name}`
//!   and `workqueue_queue_duration_seconds{name}`: client-go's workqueue
//!   metrics, which kube-controller-manager exports for every controller.
//! - `controller_runtime_reconcile_total{controller,result}` (result
//!   `success`, `error` or `requeue`; controller-runtime's `requeue_after`
//!   is our `requeue`, as kube-rs has only the timed kind),
//!   `controller_runtime_reconcile_errors_total{controller}` and
//!   `controller_runtime_active_workers{controller}`: controller-runtime's,
//!   as kube-controller-manager itself counts no reconciles.
//!
//! The queue is kube-rs's scheduler, which keeps its contents private, so it
//! is observed at its edges: [`Controller`] (kube's `Controller` with the same
//! builder calls) counts every key its watches trigger, every reconcile it
//! starts and how each one ends. As in client-go, a key triggered again
//! before it started is one add and one unit of depth; a key triggered while
//! it reconciles waits (depth 1) until that reconcile ends. A timed requeue
//! (`Action::requeue`, or the error policy's retry) counts as an add when it
//! fires (client-go's `AddAfter`) and is not in the depth while it waits, as
//! client-go keeps those in its delaying queue. Keys whose object is gone
//! before their turn leave the depth when kube reports them not found.
//!
//! Controllers that are not kube `Controller`s report through [`queue`]
//! directly: the garbage collector per action, the periodic ones (node
//! lifecycle, pod GC, TTL after finished) once per pass.
//!
//! Queue names are upstream's where it has a queue of that name
//! (`replicaset`, `deployment`, `daemonset`, `statefulset`, `job`, `cronjob`,
//! `endpoint`, `disruption`, `namespace`, `serviceaccount`), otherwise the
//! module's (`nodeipam`, `garbagecollector`, `nodelifecycle`, `podgc`,
//! `ttlafterfinished`).

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::controller::{Action, Error as ControllerError};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{reflector::reflector, watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use skiff_machinery::histogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{Debug, Write};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// client-go's workqueue buckets: 10 ns · 10^n, up to 10 s.
const BUCKETS: &[f64] = &[1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];

#[derive(Clone, Copy)]
pub enum Outcome {
    Success,
    Error,
    Requeue,
}

/// One controller's queue and reconcile counts.
pub struct Queue {
    name: &'static str,
    state: Mutex<State>,
}

struct State {
    adds: u64,
    retries: u64,
    /// Keys triggered and not yet started, with when.
    pending: HashMap<String, Instant>,
    running: usize,
    /// success, error, requeue
    results: [u64; 3],
    work: Histogram,
    waited: Histogram,
}

fn registry() -> &'static Mutex<BTreeMap<&'static str, Arc<Queue>>> {
    static QUEUES: OnceLock<Mutex<BTreeMap<&'static str, Arc<Queue>>>> = OnceLock::new();
    QUEUES.get_or_init(Default::default)
}

/// The queue named `name`. Called as a controller starts (again, after a
/// lost and regained lease): counters carry on, while what the previous run
/// had queued or running is gone with it.
pub fn queue(name: &'static str) -> Arc<Queue> {
    let mut queues = registry().lock().unwrap_or_else(|e| e.into_inner());
    let q = queues.entry(name).or_insert_with(|| {
        Arc::new(Queue {
            name,
            state: Mutex::new(State {
                adds: 0,
                retries: 0,
                pending: HashMap::new(),
                running: 0,
                results: [0; 3],
                work: Histogram::new(BUCKETS),
                waited: Histogram::new(BUCKETS),
            }),
        })
    });
    if let Ok(mut s) = q.state.lock() {
        s.pending.clear();
        s.running = 0;
    }
    q.clone()
}

/// Decrements the running count however the reconcile ends (kube aborts
/// running reconciles when the controller stops).
struct Running(Arc<Queue>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.running = s.running.saturating_sub(1);
        }
    }
}

impl Queue {
    fn with(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s)
        }
    }

    /// `key` was triggered; a key already waiting is not added twice.
    pub fn add(&self, key: String) {
        self.with(|s| {
            if let std::collections::hash_map::Entry::Vacant(e) = s.pending.entry(key) {
                e.insert(Instant::now());
                s.adds += 1;
            }
        })
    }

    /// `key` will not be worked on (its object is gone).
    pub fn forget(&self, key: &str) {
        self.with(|s| {
            s.pending.remove(key);
        })
    }

    /// An error is to be retried after a delay.
    pub fn retry(&self) {
        self.with(|s| s.retries += 1)
    }

    fn start(self: &Arc<Self>, key: &str) -> Running {
        self.with(|s| {
            let waited = match s.pending.remove(key) {
                Some(t) => t.elapsed(),
                // Not triggered by a watch: a timed requeue firing.
                None => {
                    s.adds += 1;
                    Duration::ZERO
                }
            };
            s.waited.observe(waited.as_secs_f64());
            s.running += 1;
        });
        Running(self.clone())
    }

    fn done(&self, outcome: Outcome, took: Duration) {
        self.with(|s| {
            s.work.observe(took.as_secs_f64());
            s.results[outcome as usize] += 1;
        })
    }

    /// Works on `key` (added before): counted as started now and ended with
    /// the future's result.
    pub async fn work<T, E>(
        self: &Arc<Self>,
        key: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let _running = self.start(key);
        let t = Instant::now();
        let r = fut.await;
        let outcome = if r.is_ok() {
            Outcome::Success
        } else {
            Outcome::Error
        };
        self.done(outcome, t.elapsed());
        r
    }

    /// One pass of a periodic controller: added, started and ended.
    pub async fn pass<T, E>(
        self: &Arc<Self>,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.add(String::new());
        self.work("", fut).await
    }
}

/// Every queue in the text exposition format.
pub fn render() -> String {
    let queues: Vec<Arc<Queue>> = registry()
        .lock()
        .map(|q| q.values().cloned().collect())
        .unwrap_or_default();
    let states: Vec<(&str, State)> = queues
        .iter()
        .filter_map(|q| {
            let s = q.state.lock().ok()?;
            Some((
                q.name,
                State {
                    adds: s.adds,
                    retries: s.retries,
                    pending: HashMap::new(),
                    running: s.running,
                    results: s.results,
                    work: s.work.clone(),
                    waited: s.waited.clone(),
                },
            ))
        })
        .collect();
    // Depth apart: `pending` is not copied above.
    let depths: HashMap<&str, usize> = queues
        .iter()
        .filter_map(|q| Some((q.name, q.state.lock().ok()?.pending.len())))
        .collect();
    let mut out = String::new();
    let mut counter = |name: &str, kind: &str, help: &str, value: &dyn Fn(&str, &State) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (q, s) in &states {
            let _ = writeln!(out, "{name}{{name=\"{q}\"}} {}", value(q, s));
        }
    };
    counter(
        "workqueue_adds_total",
        "counter",
        "Total number of adds handled by workqueue",
        &|_, s| s.adds,
    );
    counter(
        "workqueue_depth",
        "gauge",
        "Current depth of workqueue",
        &|q, _| depths.get(q).copied().unwrap_or(0) as u64,
    );
    counter(
        "workqueue_retries_total",
        "counter",
        "Total number of retries handled by workqueue",
        &|_, s| s.retries,
    );
    for (metric, help, pick) in [
        (
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            (|s: &State| &s.work) as fn(&State) -> &Histogram,
        ),
        (
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            |s: &State| &s.waited,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} histogram");
        for (q, s) in &states {
            pick(s).write(&mut out, metric, &format!("name=\"{q}\""));
        }
    }
    out.push_str("# HELP controller_runtime_reconcile_total Total number of reconciliations per controller\n# TYPE controller_runtime_reconcile_total counter\n");
    for (q, s) in &states {
        for (result, n) in ["success", "error", "requeue"].iter().zip(s.results) {
            let _ = writeln!(
                out,
                "controller_runtime_reconcile_total{{controller=\"{q}\",result=\"{result}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP controller_runtime_reconcile_errors_total Total number of reconciliation errors per controller\n# TYPE controller_runtime_reconcile_errors_total counter\n");
    for (q, s) in &states {
        let _ = writeln!(
            out,
            "controller_runtime_reconcile_errors_total{{controller=\"{q}\"}} {}",
            s.results[Outcome::Error as usize]
        );
    }
    out.push_str("# HELP controller_runtime_active_workers Number of currently used workers per controller\n# TYPE controller_runtime_active_workers gauge\n");
    for (q, s) in &states {
        let _ = writeln!(
            out,
            "controller_runtime_active_workers{{controller=\"{q}\"}} {}",
            s.running
        );
    }
    out
}

fn key_of<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}

fn key_of_ref<K: kube::runtime::reflector::Lookup>(r: &ObjectRef<K>) -> String {
    format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)
}

/// kube's `Controller`, with its queue counted: the same builder calls, the
/// queue's name first.
pub struct Controller<K>
where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    inner: kube::runtime::Controller<K>,
    queue: Arc<Queue>,
}

impl<K> Controller<K>
where
    K: Clone + Resource<DynamicType = ()> + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// `kube::runtime::Controller::new`: watches `api`, each object
    /// triggering its own reconcile.
    pub fn new(name: &'static str, api: Api<K>, wc: watcher::Config) -> Self {
        let queue = queue(name);
        let (reader, writer) = reflector::store();
        let q = queue.clone();
        let trigger = reflector(writer, watcher(api, wc))
            .applied_objects()
            .inspect_ok(move |o| q.add(key_of(o)));
        Controller {
            inner: kube::runtime::Controller::for_stream(trigger, reader),
            queue,
        }
    }

    /// `kube::runtime::Controller::for_shared_stream`.
    pub fn for_shared_stream(
        name: &'static str,
        trigger: impl Stream<Item = Arc<K>> + Send + 'static,
        reader: Store<K>,
    ) -> Self {
        let queue = queue(name);
        let q = queue.clone();
        let trigger = trigger.inspect(move |o| q.add(key_of(&**o)));
        Controller {
            inner: kube::runtime::Controller::for_shared_stream(trigger, reader),
            queue,
        }
    }

    pub fn store(&self) -> Store<K> {
        self.inner.store()
    }

    /// `kube::runtime::Controller::watches`.
    pub fn watches<Other, I>(
        self,
        api: Api<Other>,
        wc: watcher::Config,
        mapper: impl Fn(Other) -> I + Sync + Send + 'static,
    ) -> Self
    where
        Other: Clone + Resource + DeserializeOwned + Debug + Send + 'static,
        Other::DynamicType: Default + Debug + Clone + Eq + std::hash::Hash,
        I: 'static + IntoIterator<Item = ObjectRef<K>>,
        I::IntoIter: Send,
    {
        let q = self.queue.clone();
        let inner = self.inner.watches(api, wc, move |o| {
            let refs: Vec<ObjectRef<K>> = mapper(o).into_iter().collect();
            refs.iter().for_each(|r| q.add(key_of_ref(r)));
            refs
        });
        Controller {
            inner,
            queue: self.queue,
        }
    }

    /// `kube::runtime::Controller::watches_shared_stream`.
    pub fn watches_shared_stream<Other, I>(
        self,
        trigger: impl Stream<Item = Arc<Other>> + Send + 'static,
        mapper: impl Fn(Arc<Other>) -> I + Sync + Send + 'static,
    ) -> Self
    where
        Other: Clone + Resource + DeserializeOwned + Debug + Send + 'static,
        Other::DynamicType: Default + Debug + Clone,
        I: 'static + IntoIterator<Item = ObjectRef<K>>,
        I::IntoIter: Send,
    {
        let q = self.queue.clone();
        let inner = self.inner.watches_shared_stream(trigger, move |o| {
            let refs: Vec<ObjectRef<K>> = mapper(o).into_iter().collect();
            refs.iter().for_each(|r| q.add(key_of_ref(r)));
            refs
        });
        Controller {
            inner,
            queue: self.queue,
        }
    }

    /// `kube::runtime::Controller::run`, each reconcile counted.
    pub fn run<Fut, E, Ctx>(
        self,
        reconcile: impl Fn(Arc<K>, Arc<Ctx>) -> Fut,
        error_policy: impl Fn(Arc<K>, &E, Arc<Ctx>) -> Action,
        ctx: Arc<Ctx>,
    ) -> impl Stream<Item = Result<(ObjectRef<K>, Action), ControllerError<E, watcher::Error>>>
    where
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: std::error::Error + Send + 'static,
    {
        let (q, q2, q3) = (self.queue.clone(), self.queue.clone(), self.queue);
        let reconcile = move |obj: Arc<K>, ctx: Arc<Ctx>| {
            let running = q.start(&key_of(&*obj));
            let fut = reconcile(obj, ctx);
            async move {
                let t = Instant::now();
                let r = fut.await;
                let outcome = match &r {
                    Ok(a) if *a == Action::await_change() => Outcome::Success,
                    Ok(_) => Outcome::Requeue,
                    Err(_) => Outcome::Error,
                };
                running.0.done(outcome, t.elapsed());
                drop(running);
                r
            }
        };
        let error_policy = move |obj: Arc<K>, err: &E, ctx: Arc<Ctx>| {
            let action = error_policy(obj, err, ctx);
            if action != Action::await_change() {
                q2.retry();
            }
            action
        };
        self.inner
            .run(reconcile, error_policy, ctx)
            .inspect(move |r| {
                if let Err(ControllerError::ObjectNotFound(gone)) = r {
                    q3.forget(&key_of_ref(gone));
                }
            })
    }
}

/// Serves `/metrics` and `/healthz` over plain HTTP at `addr` (upstream's
/// old insecure controller-manager port, 10252, is the default; keep it on
/// loopback).
pub async fn serve(addr: std::net::SocketAddr) -> std::io::Result<()> {
    skiff_machinery::plain_http::serve(addr, |path| match path {
        "/metrics" => Some(("200 OK", render())),
        "/healthz" => Some(("200 OK", "ok".to_string())),
        _ => None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn depth_counts_keys_waiting_once() {
        let q = queue("test-depth");
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        let text = render();
        assert!(
            text.contains("workqueue_adds_total{name=\"test-depth\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_depth{name=\"test-depth\"} 2\n"),
            "{text}"
        );
        q.work("a", async { Ok::<_, ()>(()) }).await.unwrap();
        q.work("b", async { Err::<(), _>(()) }).await.unwrap_err();
        // A timed requeue firing: an add without a trigger.
        q.work("b", async { Ok::<_, ()>(()) }).await.unwrap();
        let text = render();
        assert!(
            text.contains("workqueue_adds_total{name=\"test-depth\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_depth{name=\"test-depth\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("controller_runtime_reconcile_total{controller=\"test-depth\",result=\"success\"} 2\n"), "{text}");
        assert!(
            text.contains(
                "controller_runtime_reconcile_errors_total{controller=\"test-depth\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("workqueue_work_duration_seconds_count{name=\"test-depth\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_active_workers{controller=\"test-depth\"} 0\n"),
            "{text}"
        );
    }
}
