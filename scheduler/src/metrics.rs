//! The scheduler's `/metrics`, named as upstream's: attempts by result,
//! attempt duration, the end-to-end latency from a pod's creation to its
//! binding, and the pods waiting in each queue.

use skiff_machinery::histogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upstream's exponential buckets for scheduling durations (1 ms · 2^n).
const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Result {
    Scheduled,
    Unschedulable,
    Error,
}

impl Result {
    fn as_str(self) -> &'static str {
        match self {
            Result::Scheduled => "scheduled",
            Result::Unschedulable => "unschedulable",
            Result::Error => "error",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    attempts: Mutex<BTreeMap<(String, Result), (u64, Option<Histogram>)>>,
    e2e: Mutex<Option<Histogram>>,
    /// (active, backoff, unschedulable), refreshed by the scheduling loop.
    pub pending: Mutex<(usize, usize, usize)>,
}

impl Metrics {
    pub fn attempt(&self, profile: &str, result: Result, took: Duration) {
        if let Ok(mut a) = self.attempts.lock() {
            let (n, h) = a.entry((profile.to_string(), result)).or_default();
            *n += 1;
            h.get_or_insert_with(|| Histogram::new(BUCKETS))
                .observe(took.as_secs_f64());
        }
    }

    /// From a pod's creation to its binding.
    pub fn bound(&self, since_created: Duration) {
        if let Ok(mut h) = self.e2e.lock() {
            h.get_or_insert_with(|| Histogram::new(BUCKETS))
                .observe(since_created.as_secs_f64());
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result.\n# TYPE scheduler_schedule_attempts_total counter\n");
        let attempts = self.attempts.lock().map(|a| a.clone()).unwrap_or_default();
        for ((profile, result), (n, _)) in &attempts {
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{profile=\"{profile}\",result=\"{}\"}} {n}",
                result.as_str()
            );
        }
        out.push_str("# HELP scheduler_scheduling_attempt_duration_seconds Scheduling attempt latency in seconds (scheduling algorithm + binding).\n# TYPE scheduler_scheduling_attempt_duration_seconds histogram\n");
        for ((profile, result), (_, h)) in &attempts {
            if let Some(h) = h {
                let labels = format!("profile=\"{profile}\",result=\"{}\"", result.as_str());
                h.write(
                    &mut out,
                    "scheduler_scheduling_attempt_duration_seconds",
                    &labels,
                );
            }
        }
        out.push_str("# HELP scheduler_pod_scheduling_sli_duration_seconds E2e latency for a pod being scheduled, from its creation to its binding.\n# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram\n");
        if let Some(h) = self.e2e.lock().ok().and_then(|h| h.clone()) {
            h.write(
                &mut out,
                "scheduler_pod_scheduling_sli_duration_seconds",
                "",
            );
        }
        out.push_str("# HELP scheduler_pending_pods Number of pending pods, by the queue type.\n# TYPE scheduler_pending_pods gauge\n");
        let (active, backoff, unschedulable) = self.pending.lock().map(|p| *p).unwrap_or_default();
        for (queue, n) in [
            ("active", active),
            ("backoff", backoff),
            ("unschedulable", unschedulable),
        ] {
            let _ = writeln!(out, "scheduler_pending_pods{{queue=\"{queue}\"}} {n}");
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` over plain HTTP at `addr` (upstream's
/// old insecure scheduler port, 10251, is the default; keep it on loopback).
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: std::sync::Arc<Metrics>,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
