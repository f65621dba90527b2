//! One pod's worker: it makes the sandbox, runs the init containers in
//! order and then the containers, restarts them as restartPolicy says with
//! upstream's CrashLoopBackOff, reports the status, and on deletion stops
//! everything gracefully (SIGTERM, grace period, SIGKILL) before telling the
//! API server the pod is gone. It re-adopts what an earlier agent left
//! running, so a restarted agent never starts a container twice.

use super::hooks;
use super::probes::{self, Kind, Verdict};
use super::status::{self, ContainerView, Observed, PodView, Terminated};
use super::Ctx;
use crate::runtime::cgroups;
use crate::runtime::container::{new_id, ContainerMeta, State};
use crate::runtime::sandbox::{PodFiles, Sandbox};
use crate::runtime::shim::{Exited, Started};
use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};
use kube::ResourceExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Upstream's CrashLoopBackOff: 10 s doubling up to 5 min, forgotten once a
/// container has run for 10 min.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How long to wait before trying a failed sandbox or image again.
const RETRY: Duration = Duration::from_secs(5);
/// How often configMap, secret, downward API and projected volumes are
/// brought up to date with their sources.
const VOLUME_REFRESH: Duration = Duration::from_secs(30);
/// How often emptyDir usage is held against its sizeLimit (kubelet's
/// eviction manager period).
const USAGE_CHECK: Duration = Duration::from_secs(10);

/// Which of the pod's container lists a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Run in order, each to success, before the others.
    Init,
    App,
    /// Added by `kubectl debug`: started once, never restarted, never
    /// probed, never ready.
    Ephemeral,
}

/// One container of the pod as the worker tracks it.
struct Track {
    name: String,
    role: Role,
    /// The current instance's id, once one was created.
    current: Option<String>,
    state: Observed,
    last: Option<Terminated>,
    restarts: i32,
    /// The next instance's attempt number.
    next_attempt: u32,
    /// Not to start again before this instant; the delay that got us here.
    backoff: Option<(Instant, Duration)>,
    image_id: String,
    /// Probe verdicts of the current instance.
    ready: bool,
    started: bool,
    started_tx: Option<watch::Sender<bool>>,
    probers: Vec<tokio::task::AbortHandle>,
}

impl Track {
    fn new(name: &str, role: Role) -> Self {
        Track {
            name: name.to_string(),
            role,
            current: None,
            state: Observed::Waiting {
                reason: if role == Role::Init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                }
                .into(),
                message: None,
            },
            last: None,
            restarts: 0,
            next_attempt: 0,
            backoff: None,
            image_id: String::new(),
            ready: false,
            started: false,
            started_tx: None,
            probers: Vec::new(),
        }
    }

    /// The instance ended: its probers stop and its verdicts no longer hold.
    fn stop_probers(&mut self) {
        for p in self.probers.drain(..) {
            p.abort();
        }
        self.started_tx = None;
        self.ready = false;
        self.started = false;
    }

    fn exited(&self) -> Option<&Terminated> {
        match &self.state {
            Observed::Terminated(t) => Some(t),
            _ => None,
        }
    }
}

pub struct Worker {
    ctx: Arc<Ctx>,
    pod: Arc<Pod>,
    uid: String,
    sandbox: Sandbox,
    pod_ip: Option<String>,
    sandbox_ready: bool,
    tracks: Vec<Track>,
    start_time: String,
    failed: bool,
    /// Sandbox or image problems: try again at this instant.
    retry_at: Option<Instant>,
    last_status: Option<Value>,
    /// The pod's volumes on this node, once set up; when they were last refreshed.
    volumes: Option<BTreeMap<String, PathBuf>>,
    volumes_at: Instant,
    /// Why this node evicted the pod, once it did.
    evicted: Option<String>,
    usage_checked_at: Instant,
    exits_tx: mpsc::UnboundedSender<String>,
    exits_rx: mpsc::UnboundedReceiver<String>,
    verdicts_tx: mpsc::UnboundedSender<Verdict>,
    verdicts_rx: mpsc::UnboundedReceiver<Verdict>,
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

impl Worker {
    pub fn new(ctx: Arc<Ctx>, pod: Arc<Pod>) -> Self {
        let uid = pod.uid().unwrap_or_default();
        let sandbox = Sandbox::for_pod(ctx.runtime.dirs.pods.join(&uid), &pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let tracks = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Track::new(&c.name, Role::Init))
            .chain(
                spec.containers
                    .iter()
                    .map(|c| Track::new(&c.name, Role::App)),
            )
            .collect();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(crate::now);
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let (verdicts_tx, verdicts_rx) = mpsc::unbounded_channel();
        let mut worker = Worker {
            ctx,
            pod,
            uid,
            sandbox,
            pod_ip: None,
            sandbox_ready: false,
            tracks,
            start_time,
            failed: false,
            retry_at: None,
            last_status: None,
            volumes: None,
            volumes_at: Instant::now(),
            evicted: None,
            usage_checked_at: Instant::now(),
            exits_tx,
            exits_rx,
            verdicts_tx,
            verdicts_rx,
        };
        worker.track_new_ephemeral_containers();
        worker
    }

    fn container_spec(&self, t: &Track) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        if t.role == Role::Ephemeral {
            ephemeral_containers(&self.pod)
                .find(|c| c.name == t.name)
                .map(as_container)
        } else if t.role == Role::Init {
            spec.init_containers
                .iter()
                .flatten()
                .find(|c| c.name == t.name)
                .cloned()
        } else {
            spec.containers.iter().find(|c| c.name == t.name).cloned()
        }
    }

    /// Runs until the pod is gone. `updates` carries the pod as the API
    /// shows it, `None` once it was removed.
    pub async fn run(mut self, mut updates: watch::Receiver<Option<Arc<Pod>>>) {
        self.adopt().await;
        loop {
            let latest = updates.borrow_and_update().clone();
            let Some(pod) = latest else {
                // Removed from the API (force-deleted): stop at once.
                self.terminate(Duration::ZERO).await;
                self.remove_logs();
                return;
            };
            self.pod = pod;
            self.track_new_ephemeral_containers();
            if self.pod.metadata.deletion_timestamp.is_some() {
                let grace = self
                    .pod
                    .metadata
                    .deletion_grace_period_seconds
                    .unwrap_or(30)
                    .max(0) as u64;
                self.terminate(Duration::from_secs(grace)).await;
                self.ctx.finish_deletion(&self.pod).await;
                self.remove_logs();
                return;
            }
            if !is_terminal(&self.pod) {
                self.check_usage().await;
                self.sync().await;
                self.report().await;
                if self.is_finished() {
                    // Nothing will run again: free the sandbox and its address.
                    self.terminate(Duration::ZERO).await;
                }
            }
            let deadline = self.next_deadline();
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        return; // the agent is stopping; containers stay
                    }
                }
                Some(_) = self.exits_rx.recv() => {}
                Some(v) = self.verdicts_rx.recv() => self.on_verdict(v),
                _ = sleep_until(deadline) => {}
            }
            while let Ok(v) = self.verdicts_rx.try_recv() {
                self.on_verdict(v);
            }
            self.collect_exits();
        }
    }

    /// Ephemeral containers are added to a running pod (its
    /// `ephemeralcontainers` subresource): the new ones get a track (at
    /// start, all the pod has).
    fn track_new_ephemeral_containers(&mut self) {
        let new: Vec<Track> = ephemeral_containers(&self.pod)
            .filter(|c| {
                !self
                    .tracks
                    .iter()
                    .any(|t| t.role == Role::Ephemeral && t.name == c.name)
            })
            .map(|c| Track::new(&c.name, Role::Ephemeral))
            .collect();
        self.tracks.extend(new);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let refresh = (self.volumes.is_some() && super::volumes::has_refreshable(&self.pod))
            .then(|| self.volumes_at + VOLUME_REFRESH);
        let usage = (self.volumes.is_some()
            && self.evicted.is_none()
            && !super::volumes::limited_empty_dirs(&self.pod).is_empty())
        .then(|| self.usage_checked_at + USAGE_CHECK);
        self.tracks
            .iter()
            .filter_map(|t| t.backoff.map(|(at, _)| at))
            .chain(self.retry_at)
            .chain(refresh)
            .chain(usage)
            .filter(|at| *at > Instant::now())
            .min()
    }

    /// Picks up the sandbox and containers an earlier agent left.
    async fn adopt(&mut self) {
        if self.sandbox.exists() {
            self.pod_ip = std::fs::read_to_string(self.sandbox.dir().join("ip"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            self.sandbox_ready = true;
        } else if self.sandbox.dir().join("ip").exists() {
            // A sandbox whose namespaces are gone (the machine rebooted):
            // its address is released before a new sandbox asks for one,
            // or the IPAM plugin refuses the pod a second one.
            tracing::info!(pod = %self.pod.name_any(), "sandbox lost (reboot?): making a new one");
            if !self.sandbox.host_network() {
                self.ctx.detach_network(&self.pod, &self.sandbox).await;
            }
            let _ = std::fs::remove_file(self.sandbox.dir().join("ip"));
        } else if !self.sandbox.dir().exists() {
            // Containers are made after the pod's directory and removed
            // before it: a pod without one (any pod new to this node) has
            // none to adopt, and reading every container's record for it
            // made each pod start cost more the more pods the node ran.
            return;
        }
        let mut mine: Vec<ContainerMeta> = self
            .ctx
            .runtime
            .list()
            .into_iter()
            .filter(|m| m.pod_uid == self.uid)
            .collect();
        mine.sort_by_key(|m| m.attempt);
        for meta in mine {
            let Some(i) = self
                .tracks
                .iter()
                .position(|t| t.name == meta.name && (t.role == Role::Init) == meta.init)
            else {
                let _ = self.ctx.runtime.remove(&meta.id).await;
                continue;
            };
            // Only the newest attempt stays; an older one is history.
            if let Some(old) = self.tracks[i].current.replace(meta.id.clone()) {
                let _ = self.ctx.runtime.remove(&old).await;
            }
            let t = &mut self.tracks[i];
            t.restarts = meta.attempt as i32;
            t.next_attempt = meta.attempt + 1;
            t.image_id = meta.image_id.clone();
            let state = self.ctx.runtime.state(&meta.id);
            self.tracks[i].state = observe(&self.ctx, &meta.id, &state);
            if matches!(state, State::Running(_)) {
                self.watch_exit(meta.id.clone());
                self.start_probers(i, &meta.id);
            }
            tracing::info!(pod = %self.pod.name_any(), container = %meta.name, id = %meta.id, "re-adopted container");
        }
    }

    /// Starts the probes of container `i`'s instance `id`; without a
    /// readiness probe it is ready once running, as upstream.
    fn start_probers(&mut self, i: usize, id: &str) {
        let Some(spec) = self.container_spec(&self.tracks[i]) else {
            return;
        };
        let declared = probes::declared(&spec);
        let t = &mut self.tracks[i];
        t.stop_probers();
        t.started = spec.startup_probe.is_none();
        t.ready = spec.readiness_probe.is_none() && t.started;
        let (started_tx, started_rx) = watch::channel(t.started);
        let target = probes::Target {
            runtime: self.ctx.runtime.clone(),
            container_id: id.to_string(),
            pod_ip: self.pod_ip.clone().unwrap_or_default(),
        };
        for (kind, probe) in declared {
            let task = tokio::spawn(probes::run(
                kind,
                probe,
                spec.clone(),
                target.clone(),
                started_rx.clone(),
                self.verdicts_tx.clone(),
            ));
            t.probers.push(task.abort_handle());
        }
        t.started_tx = Some(started_tx);
    }

    /// Runs the postStart hook; a failure kills the container, whose exit
    /// then goes the usual way (restartPolicy, back-off).
    async fn post_start(&self, spec: &Container, id: &str) {
        let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()) else {
            return;
        };
        let pod_ip = self.pod_ip.clone().unwrap_or_default();
        let timeout = Duration::from_secs(120);
        if let Err(e) = hooks::run(&self.ctx.runtime, id, &hook, spec, &pod_ip, timeout).await {
            self.ctx.event(
                &self.pod,
                "Warning",
                "FailedPostStartHook",
                format!("PostStartHook failed: {e}"),
            );
            let grace = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            let stop_spec = StopSpec {
                container: None,
                pod_ip,
            };
            stop(
                &self.ctx,
                &self.pod,
                id,
                Duration::from_secs(grace.max(0) as u64),
                stop_spec,
            )
            .await;
        }
    }

    fn on_verdict(&mut self, v: Verdict) {
        let Some(i) = self
            .tracks
            .iter()
            .position(|t| t.current.as_deref() == Some(v.container_id.as_str()))
        else {
            return; // from an instance that is gone
        };
        if let Some(msg) = &v.failure {
            let note = format!("{} probe failed: {msg}", v.kind.name());
            self.ctx.event(&self.pod, "Warning", "Unhealthy", note);
        }
        let Some(passing) = v.changed_to else { return };
        let spec = self.container_spec(&self.tracks[i]);
        let t = &mut self.tracks[i];
        match (v.kind, passing) {
            (Kind::Readiness, ok) => t.ready = ok,
            (Kind::Startup, true) => {
                t.started = true;
                t.ready = spec.as_ref().is_some_and(|c| c.readiness_probe.is_none());
                if let Some(tx) = &t.started_tx {
                    let _ = tx.send(true);
                }
            }
            (Kind::Startup | Kind::Liveness, false) => {
                let what = if v.kind == Kind::Startup {
                    "startup"
                } else {
                    "liveness"
                };
                let note = format!(
                    "Container {} failed {what} probe, will be restarted",
                    t.name
                );
                self.ctx.event(&self.pod, "Normal", "Killing", note);
                let grace = self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                let probe_grace = spec
                    .as_ref()
                    .and_then(|c| {
                        if v.kind == Kind::Startup {
                            c.startup_probe.clone()
                        } else {
                            c.liveness_probe.clone()
                        }
                    })
                    .and_then(|p| p.termination_grace_period_seconds);
                let grace = Duration::from_secs(probe_grace.unwrap_or(grace).max(0) as u64);
                let (ctx, id, pod) = (self.ctx.clone(), v.container_id.clone(), self.pod.clone());
                let stop_spec = StopSpec {
                    container: spec,
                    pod_ip: self.pod_ip.clone().unwrap_or_default(),
                };
                tokio::spawn(async move { stop(&ctx, &pod, &id, grace, stop_spec).await });
            }
            (Kind::Liveness, true) => {}
        }
    }

    fn watch_exit(&self, id: String) {
        let (ctx, tx) = (self.ctx.clone(), self.exits_tx.clone());
        tokio::spawn(async move {
            ctx.runtime.wait(&id).await;
            let _ = tx.send(id);
        });
    }

    /// Reads how exited containers ended.
    fn collect_exits(&mut self) {
        while let Ok(id) = self.exits_rx.try_recv() {
            self.on_exit(&id);
        }
        for i in 0..self.tracks.len() {
            if let (Some(id), Observed::Running { .. }) =
                (self.tracks[i].current.clone(), &self.tracks[i].state)
            {
                if !matches!(self.ctx.runtime.state(&id), State::Running(_)) {
                    self.on_exit(&id);
                }
            }
        }
    }

    fn on_exit(&mut self, id: &str) {
        let Some(i) = self
            .tracks
            .iter()
            .position(|t| t.current.as_deref() == Some(id))
        else {
            return;
        };
        let state = self.ctx.runtime.state(id);
        let mut observed = observe(&self.ctx, id, &state);
        let fallback = self
            .container_spec(&self.tracks[i])
            .and_then(|c| c.termination_message_policy)
            == Some("FallbackToLogsOnError".to_string());
        if let Observed::Terminated(term) = &mut observed {
            if fallback && term.exit_code != 0 && term.message.is_none() {
                term.message = self.ctx.runtime.meta(id).map(|m| log_tail(&m.log_path));
            }
        }
        let ran_long = match &state {
            State::Exited(s, e) => ran_for(s, e) >= BACKOFF_RESET,
            _ => false,
        };
        let t = &mut self.tracks[i];
        if let Observed::Terminated(term) = &observed {
            tracing::info!(pod = %self.pod.name_any(), container = %t.name, exit_code = term.exit_code, reason = %term.reason, "container exited");
        }
        if ran_long {
            t.backoff = None;
        }
        t.stop_probers();
        t.state = observed;
    }

    /// Whether the pod's containers are all done for good.
    fn is_finished(&self) -> bool {
        if self.failed || self.evicted.is_some() {
            return true;
        }
        let policy = restart_policy(&self.pod);
        let apps: Vec<&Track> = self.tracks.iter().filter(|t| t.role == Role::App).collect();
        !apps.is_empty()
            && apps.iter().all(|t| match t.exited() {
                Some(e) => !should_restart(&policy, e.exit_code),
                None => false,
            })
    }

    /// Evicts the pod, as kubelet's eviction manager does, once an emptyDir
    /// holds more than its sizeLimit: its containers are killed at once and
    /// it fails with reason Evicted.
    async fn check_usage(&mut self) {
        if self.evicted.is_some()
            || self.volumes.is_none()
            || self.usage_checked_at.elapsed() < USAGE_CHECK
        {
            return;
        }
        self.usage_checked_at = Instant::now();
        let limited = super::volumes::limited_empty_dirs(&self.pod);
        if limited.is_empty() {
            return;
        }
        let dir = self.sandbox.dir().to_path_buf();
        let over = tokio::task::spawn_blocking(move || {
            super::volumes::empty_dir_over_limit(&dir, &limited)
        })
        .await
        .ok()
        .flatten();
        if let Some(message) = over {
            tracing::info!(pod = %self.pod.name_any(), %message, "evicting");
            self.ctx
                .event(&self.pod, "Warning", "Evicted", message.clone());
            self.evicted = Some(message);
            self.terminate(Duration::ZERO).await;
        }
    }

    async fn sync(&mut self) {
        if self.evicted.is_some() {
            return;
        }
        if !self.sandbox_ready {
            if self.retry_at.is_some_and(|at| at > Instant::now()) {
                return;
            }
            if let Err(e) = self.make_sandbox().await {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "sandbox not created");
                self.ctx.event(
                    &self.pod,
                    "Warning",
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                self.retry_at = Some(Instant::now() + RETRY);
                return;
            }
            self.retry_at = None;
        }
        let refresh = self.volumes.is_some()
            && super::volumes::has_refreshable(&self.pod)
            && self.volumes_at.elapsed() >= VOLUME_REFRESH;
        if self.volumes.is_none() || refresh {
            match super::volumes::setup(
                &self.ctx,
                &self.ctx.with_addresses(&self.pod, self.pod_ip.as_deref()),
                self.sandbox.dir(),
            )
            .await
            {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_at = Instant::now();
                }
                Err(e) if self.volumes.is_none() => {
                    self.ctx.event(&self.pod, "Warning", "FailedMount", e);
                    self.retry_at = Some(Instant::now() + RETRY);
                    return;
                }
                Err(e) => tracing::warn!(pod = %self.pod.name_any(), error = %e, "volume refresh"),
            }
        }
        // Ephemeral containers start once, whatever the pod's policy (also
        // while it initializes, as upstream), and are left as they ended.
        for i in 0..self.tracks.len() {
            let t = &self.tracks[i];
            if t.role == Role::Ephemeral
                && t.current.is_none()
                && matches!(t.state, Observed::Waiting { .. })
            {
                self.start(i).await;
            }
        }
        let policy = restart_policy(&self.pod);
        // Init containers, one at a time, each to success.
        for i in 0..self.tracks.len() {
            if self.tracks[i].role != Role::Init {
                continue;
            }
            match &self.tracks[i].state {
                Observed::Terminated(t) if t.exit_code == 0 => continue,
                Observed::Running { .. } => return,
                Observed::Terminated(t) => {
                    if policy == "Never" {
                        self.failed = true;
                        return;
                    }
                    let t = t.clone();
                    self.restart(i, t).await;
                    return;
                }
                Observed::Waiting { .. } => {
                    self.start(i).await;
                    return;
                }
            }
        }
        for i in 0..self.tracks.len() {
            if self.tracks[i].role != Role::App {
                continue;
            }
            match &self.tracks[i].state {
                Observed::Running { .. } => {}
                Observed::Terminated(t) => {
                    if should_restart(&policy, t.exit_code) {
                        let t = t.clone();
                        self.restart(i, t).await;
                    }
                }
                Observed::Waiting { .. } => {
                    if self.tracks[i].last.is_some() && self.tracks[i].current.is_some() {
                        // Backing off after a crash.
                        let last = self.tracks[i].last.clone();
                        if let Some(t) = last {
                            self.restart(i, t).await;
                        }
                    } else {
                        self.start(i).await;
                    }
                }
            }
        }
    }

    /// The PID namespace of the container an ephemeral container targets
    /// (`targetContainerName`, `kubectl debug --target`), while it runs.
    fn target_pid_namespace(&self, t: &Track) -> Option<PathBuf> {
        let target = ephemeral_containers(&self.pod)
            .find(|c| c.name == t.name)?
            .target_container_name
            .clone()?;
        let id = self
            .tracks
            .iter()
            .find(|o| o.role != Role::Ephemeral && o.name == target)?
            .current
            .clone()?;
        match self.ctx.runtime.state(&id) {
            State::Running(s) => Some(PathBuf::from(format!("/proc/{}/ns/pid", s.pid))),
            _ => None,
        }
    }

    /// Starts the container again once its back-off has passed.
    async fn restart(&mut self, i: usize, last: Terminated) {
        let now = Instant::now();
        let t = &mut self.tracks[i];
        match t.backoff {
            Some((at, delay)) if at > now => {
                let (pod, ns) = (
                    self.pod.name_any(),
                    self.pod.namespace().unwrap_or_default(),
                );
                t.state = Observed::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {} restarting failed container={} pod={pod}_{ns}({})",
                        human(delay),
                        t.name,
                        self.uid
                    )),
                };
                t.last = Some(last);
                return;
            }
            Some((_, delay)) => {
                let next = (delay * 2).min(BACKOFF_MAX);
                t.backoff = Some((now + next, next));
            }
            None => t.backoff = Some((now + BACKOFF_INITIAL, BACKOFF_INITIAL)),
        }
        t.last = Some(last);
        t.restarts += 1;
        self.start(i).await;
    }

    async fn make_sandbox(&mut self) -> Result<(), String> {
        let began = Instant::now();
        let hostname = PodFiles::for_pod(&self.pod, "", &self.ctx.dns).hostname;
        let sb = self.sandbox.clone();
        let h = hostname.clone();
        let (uid, limits) = (self.uid.clone(), cgroups::PodLimits::for_pod(&self.pod));
        tokio::task::spawn_blocking(move || {
            sb.create(&h)
                .map_err(|e| format!("creating namespaces: {e}"))?;
            cgroups::create_pod(&uid, &limits)
                .map_err(|e| format!("creating the pod's cgroup: {e}"))
        })
        .await
        .map_err(|e| e.to_string())??;
        let namespaces = began.elapsed();
        let ip = if self.sandbox.host_network() {
            self.ctx.host_ip.clone()
        } else {
            self.ctx.attach_network(&self.pod, &self.sandbox).await?
        };
        tracing::debug!(pod = %self.pod.name_any(), ?namespaces, network = ?(began.elapsed() - namespaces), "sandbox ready");
        let files = PodFiles::for_pod(&self.pod, &ip, &self.ctx.dns);
        self.sandbox
            .write_files(&files)
            .map_err(|e| format!("writing pod files: {e}"))?;
        std::fs::write(self.sandbox.dir().join("ip"), &ip).map_err(|e| e.to_string())?;
        self.pod_ip = Some(ip);
        self.sandbox_ready = true;
        Ok(())
    }

    /// Container `i` cannot be created yet (its config or image is not
    /// there): it waits with `reason`, and the worker tries again after `delay`.
    fn wait_to_retry(&mut self, i: usize, reason: &str, message: String, delay: Duration) {
        self.ctx
            .event(&self.pod, "Warning", "Failed", format!("Error: {message}"));
        self.tracks[i].state = Observed::Waiting {
            reason: reason.to_string(),
            message: Some(message),
        };
        self.retry_at = Some(Instant::now() + delay);
    }

    /// Creates and starts the next instance of container `i`.
    async fn start(&mut self, i: usize) {
        let Some(spec) = self.container_spec(&self.tracks[i]) else {
            return;
        };
        let began = Instant::now();
        let image = match self.ctx.image(&self.pod, &spec).await {
            Ok(img) => img,
            Err(f) => {
                self.ctx.event(
                    &self.pod,
                    "Warning",
                    "Failed",
                    format!("Error: {}", f.reason),
                );
                self.tracks[i].state = Observed::Waiting {
                    reason: f.reason,
                    message: Some(f.message),
                };
                // The image manager's back-off says when to look again.
                self.retry_at = Some(Instant::now() + f.retry_after);
                return;
            }
        };
        let env = match self
            .ctx
            .environment(
                &self.pod,
                self.pod_ip.as_deref(),
                &spec,
                &image.defaults.env,
            )
            .await
        {
            Ok(env) => env,
            Err(message) => {
                self.wait_to_retry(i, "CreateContainerConfigError", message, RETRY);
                return;
            }
        };
        let vols = self.volumes.clone().unwrap_or_default();
        let mounts = match super::volumes::mounts_for(&spec, &vols, &env) {
            Ok(m) => m,
            Err(message) => {
                self.wait_to_retry(i, "CreateContainerConfigError", message, RETRY);
                return;
            }
        };
        let t = &self.tracks[i];
        let (ns, name) = (
            self.pod.namespace().unwrap_or_default(),
            self.pod.name_any(),
        );
        let attempt = t.next_attempt;
        let meta = ContainerMeta {
            id: new_id(),
            pod_uid: self.uid.clone(),
            pod_namespace: ns.clone(),
            pod_name: name.clone(),
            name: t.name.clone(),
            attempt,
            init: t.role == Role::Init,
            image: spec.image.clone().unwrap_or_default(),
            image_id: image.id.clone(),
            log_path: self
                .ctx
                .runtime
                .dirs
                .pod_logs(&ns, &name, &self.uid)
                .join(&t.name)
                .join(format!("{attempt}.log")),
            created_at: crate::now(),
        };
        // Logs of the current and the previous run stay (`kubectl logs
        // --previous`); older ones go with their containers, as kubelet's.
        if let Some(older) = attempt.checked_sub(2) {
            let old_log = meta.log_path.with_file_name(format!("{older}.log"));
            for f in crate::runtime::crilog::rotated_files(&old_log) {
                let _ = std::fs::remove_file(f);
            }
            let _ = std::fs::remove_file(old_log);
        }
        let previous = self.tracks[i].current.replace(meta.id.clone());
        self.tracks[i].next_attempt += 1;
        self.tracks[i].image_id = image.id.clone();
        if let Some(old) = previous {
            let _ = self.ctx.runtime.remove(&old).await;
        }
        let prepared = began.elapsed();
        let pid_namespace = self.target_pid_namespace(&self.tracks[i]);
        let result = self
            .ctx
            .create_and_start(
                &self.pod,
                &spec,
                &meta,
                &image,
                env,
                mounts,
                &self.sandbox,
                pid_namespace,
            )
            .await;
        tracing::debug!(pod = %self.pod.name_any(), container = %spec.name, image_and_env = ?prepared, runtime = ?(began.elapsed() - prepared), "container started");
        let t = &mut self.tracks[i];
        match result {
            Ok(started) => {
                self.ctx.event(
                    &self.pod,
                    "Normal",
                    "Started",
                    format!("Started container {}", t.name),
                );
                t.state = Observed::Running {
                    started_at: started.started_at,
                };
                self.watch_exit(meta.id.clone());
                self.post_start(&spec, &meta.id).await;
                self.start_probers(i, &meta.id);
            }
            Err(message) => {
                self.ctx
                    .event(&self.pod, "Warning", "Failed", format!("Error: {message}"));
                t.state = Observed::Terminated(Terminated {
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(message),
                    started_at: None,
                    finished_at: crate::now(),
                    container_id: Some(container_id(&meta.id)),
                });
            }
        }
    }

    /// Stops every container (SIGTERM, then SIGKILL after `grace`), then
    /// removes them and the sandbox.
    async fn terminate(&mut self, grace: Duration) {
        let running: Vec<(String, String, Option<Container>)> = self
            .tracks
            .iter()
            .filter(|t| matches!(t.state, Observed::Running { .. }))
            .filter_map(|t| {
                t.current
                    .clone()
                    .map(|id| (t.name.clone(), id, self.container_spec(t)))
            })
            .collect();
        let pod_ip = self.pod_ip.clone().unwrap_or_default();
        let stops = running.into_iter().map(|(name, id, container)| {
            let ctx = self.ctx.clone();
            let pod = self.pod.clone();
            let spec = StopSpec {
                container,
                pod_ip: pod_ip.clone(),
            };
            async move {
                ctx.event(
                    &pod,
                    "Normal",
                    "Killing",
                    format!("Stopping container {name}"),
                );
                stop(&ctx, &pod, &id, grace, spec).await;
            }
        });
        futures::future::join_all(stops).await;
        self.collect_exits();
        for t in &self.tracks {
            if let Some(id) = &t.current {
                if let Err(e) = self.ctx.runtime.remove(id).await {
                    tracing::warn!(error = %e, "removing a container");
                }
            }
        }
        if self.sandbox_ready || self.sandbox.dir().exists() {
            if !self.sandbox.host_network() {
                self.ctx.detach_network(&self.pod, &self.sandbox).await;
            }
            let sb = self.sandbox.clone();
            let uid = self.uid.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let r = sb.destroy();
                crate::runtime::cgroups::remove_pod(&uid);
                r
            })
            .await;
            self.sandbox_ready = false;
        }
    }

    fn remove_logs(&self) {
        let dir = self.ctx.runtime.dirs.pod_logs(
            &self.pod.namespace().unwrap_or_default(),
            &self.pod.name_any(),
            &self.uid,
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Writes the status when it changed.
    async fn report(&mut self) {
        let pod_value = serde_json::to_value(&*self.pod).unwrap_or_default();
        let view = |role: Role| -> Vec<ContainerView> {
            self.tracks
                .iter()
                .filter(|t| t.role == role)
                .map(|t| {
                    let spec = self.container_spec(t);
                    let running = matches!(t.state, Observed::Running { .. });
                    ContainerView {
                        name: t.name.clone(),
                        image: spec.and_then(|c| c.image).unwrap_or_default(),
                        image_id: t.image_id.clone(),
                        container_id: t.current.as_deref().map(container_id),
                        state: t.state.clone(),
                        last: t.last.clone(),
                        restarts: t.restarts,
                        ready: match t.role {
                            Role::App => running && t.ready,
                            Role::Init => {
                                (running && t.ready) || t.exited().is_some_and(|e| e.exit_code == 0)
                            }
                            Role::Ephemeral => false,
                        },
                        started: running && t.started,
                    }
                })
                .collect()
        };
        let pv = PodView {
            pod: &pod_value,
            sandbox_ready: self.sandbox_ready,
            pod_ip: self.pod_ip.clone(),
            host_ip: self.ctx.host_ip.clone(),
            start_time: self.start_time.clone(),
            init: view(Role::Init),
            containers: view(Role::App),
            ephemeral: view(Role::Ephemeral),
            failed: self.failed,
            evicted: self.evicted.clone(),
        };
        let previous = pod_value.get("status");
        let status = status::build(&pv, previous);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        if self.ctx.write_status(&self.pod, &status).await {
            self.last_status = Some(status);
        }
    }
}

/// The pod's ephemeral containers.
fn ephemeral_containers(pod: &Pod) -> impl Iterator<Item = &EphemeralContainer> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
}

/// An ephemeral container as the container it runs as: the same fields
/// but its target, which only says whose PID namespace it joins.
fn as_container(e: &EphemeralContainer) -> Container {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(v).unwrap_or_default()
}

/// What stopping a container needs: its spec (for the preStop hook) and
/// the pod's address (httpGet hooks).
struct StopSpec {
    container: Option<Container>,
    pod_ip: String,
}

/// The preStop hook, then SIGTERM, then SIGKILL once `grace` has passed
/// (the hook's time counts against it); returns when the container ended.
async fn stop(ctx: &Ctx, pod: &Pod, id: &str, grace: Duration, spec: StopSpec) {
    let deadline = tokio::time::Instant::now() + grace;
    let pre_stop = spec
        .container
        .as_ref()
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.clone());
    if let (Some(hook), Some(c)) = (pre_stop, &spec.container) {
        if let Err(e) = hooks::run(&ctx.runtime, id, &hook, c, &spec.pod_ip, grace).await {
            ctx.event(
                pod,
                "Warning",
                "FailedPreStopHook",
                format!("PreStopHook failed: {e}"),
            );
        }
    }
    let _ = ctx.runtime.kill(id, "SIGTERM").await;
    if tokio::time::timeout_at(deadline, ctx.runtime.wait(id))
        .await
        .is_err()
    {
        let _ = ctx.runtime.kill(id, "SIGKILL").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), ctx.runtime.wait(id)).await;
    }
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    policy == "Always" || (policy == "OnFailure" && exit_code != 0)
}

fn container_id(id: &str) -> String {
    format!("runc://{id}")
}

fn ran_for(s: &Started, e: &Exited) -> Duration {
    let parse = |t: &str| t.parse::<k8s_openapi::jiff::Timestamp>().ok();
    match (parse(&s.started_at), parse(&e.finished_at)) {
        (Some(a), Some(b)) => {
            Duration::from_secs(b.as_second().saturating_sub(a.as_second()).max(0) as u64)
        }
        _ => Duration::ZERO,
    }
}

/// The status view of a container's state on disk.
fn observe(ctx: &Ctx, id: &str, state: &State) -> Observed {
    match state {
        State::Created => Observed::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        },
        State::Running(s) => Observed::Running {
            started_at: s.started_at.clone(),
        },
        State::Exited(s, e) => Observed::Terminated(terminated(ctx, id, Some(s), e)),
        State::StartFailed(e) => Observed::Terminated(terminated(ctx, id, None, e)),
    }
}

fn terminated(ctx: &Ctx, id: &str, s: Option<&Started>, e: &Exited) -> Terminated {
    let reason = if e.start_error.is_some() {
        "StartError"
    } else if e.oom_killed {
        "OOMKilled"
    } else if e.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let message = e
        .start_error
        .clone()
        .or_else(|| Some(ctx.runtime.termination_message(id)).filter(|m| !m.is_empty()));
    Terminated {
        exit_code: e.exit_code,
        reason: reason.into(),
        message,
        started_at: s.map(|s| s.started_at.clone()),
        finished_at: e.finished_at.clone(),
        container_id: Some(container_id(id)),
    }
}

/// The end of a container's log, as FallbackToLogsOnError reports it:
/// the last 80 lines, at most 2048 bytes.
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| crate::runtime::crilog::parse(l).map(|r| r.text))
        .collect();
    let mut out = lines[lines.len().saturating_sub(80)..].join(&b'\n');
    if out.len() > 2048 {
        out.drain(..out.len() - 2048);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `10s`, `2m40s`, `5m0s` as Go prints durations.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
