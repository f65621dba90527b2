//! Node and pod resource statistics from cgroups and /proc, served on the
//! agent's HTTPS port as kubelet serves them: `GET /stats/summary` (the
//! Summary API) and `GET /metrics/resource` (what metrics-server and
//! skiff's API server scrape for `kubectl top`).
//!
//! `cgroup` reads one cgroup (v1 or v2); `node` the node's totals;
//! `sample` takes one reading of everything; `rate` turns two readings into
//! cpu rates; `summary` and `prometheus` render them. A background task
//! samples every [`INTERVAL`], as cadvisor's housekeeping does, so the
//! summary has a `usageNanoCores` over the last interval; resource metrics
//! are cumulative and read fresh for every request.

pub mod cgroup;
pub mod node;
pub mod prometheus;
pub mod rate;
pub mod sample;
pub mod summary;

use crate::runtime::Runtime;
use cgroup::Hierarchy;
use rate::Rates;
use sample::Sample;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often the background task samples (kubelet's housekeeping interval).
pub const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("reading stats: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The node's statistics: a reader of cgroups and the latest background
/// sample with its rates.
pub struct Stats {
    runtime: Runtime,
    hierarchy: Hierarchy,
    /// Whose filesystem the summary reports (kubelet's root dir).
    data_dir: PathBuf,
    latest: Mutex<Option<(Arc<Sample>, Rates)>>,
}

impl Stats {
    /// Statistics of the containers `runtime` runs; the background sampler
    /// runs as long as the returned value lives.
    pub fn start(runtime: Runtime) -> Arc<Stats> {
        let stats = Arc::new(Stats {
            data_dir: runtime.dirs.root.clone(),
            runtime,
            hierarchy: Hierarchy::detect(),
            latest: Mutex::new(None),
        });
        tokio::spawn(sampler(Arc::downgrade(&stats)));
        stats
    }

    /// Reads everything now (on a blocking thread).
    pub async fn sample(&self) -> Result<Sample, StatsError> {
        let (runtime, hierarchy, dir) = (
            self.runtime.clone(),
            self.hierarchy.clone(),
            self.data_dir.clone(),
        );
        Ok(tokio::task::spawn_blocking(move || sample::take(&runtime, &hierarchy, &dir)).await?)
    }

    /// Keeps `next` as the latest sample, with rates against the one before.
    fn record(&self, next: Sample) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let rates = latest
            .as_ref()
            .map(|(prev, _)| rate::between(prev, &next))
            .unwrap_or_default();
        *latest = Some((Arc::new(next), rates));
    }

    /// The Summary API's answer for node `node_name`.
    pub async fn summary(
        &self,
        node_name: &str,
        only_cpu_and_memory: bool,
    ) -> Result<serde_json::Value, StatsError> {
        let current = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (sample, rates) = match current {
            Some(c) => c,
            None => {
                // Asked before the first background sample: take it now.
                self.record(self.sample().await?);
                self.latest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_default()
            }
        };
        Ok(summary::render(
            node_name,
            &sample,
            &rates,
            only_cpu_and_memory,
        ))
    }

    /// The resource metrics text, read now.
    pub async fn resource_metrics(&self) -> String {
        match self.sample().await {
            Ok(s) => prometheus::render(&s, s.node.cpu_ns.is_none()),
            Err(e) => {
                tracing::warn!(error = %e, "reading resource metrics");
                prometheus::render(&Sample::default(), true)
            }
        }
    }
}

/// Samples every [`INTERVAL`] until the stats are dropped.
async fn sampler(stats: Weak<Stats>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(stats) = stats.upgrade() else {
            return;
        };
        match stats.sample().await {
            Ok(s) => stats.record(s),
            Err(e) => tracing::warn!(error = %e, "sampling stats"),
        }
    }
}
