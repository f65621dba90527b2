//! The proxy's `/metrics` (sync duration and count, rules written, named
//! as kube-proxy's where there is one) and `/healthz` (failing while syncs
//! fail, so a node whose Services no longer route says so).

use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use skiff_machinery::histogram::Histogram;

/// kube-proxy's buckets for sync durations (1 ms … ~16 s).
const SYNC_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

#[derive(Debug)]
struct State {
    full: Histogram,
    partial: Histogram,
    syncs_ok: u64,
    syncs_failed: u64,
    chains_written: u64,
    nat_rules: usize,
    filter_rules: usize,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct SyncMetrics {
    state: Mutex<State>,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics {
            state: Mutex::new(State {
                full: Histogram::new(SYNC_BOUNDS),
                partial: Histogram::new(SYNC_BOUNDS),
                syncs_ok: 0,
                syncs_failed: 0,
                chains_written: 0,
                nat_rules: 0,
                filter_rules: 0,
                last_success: None,
                last_error: None,
            }),
        }
    }
}

/// One finished sync, as the loop reports it.
pub struct SyncReport {
    pub full: bool,
    pub took: Duration,
    pub chains_written: usize,
    pub nat_rules: usize,
    pub filter_rules: usize,
}

impl SyncMetrics {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn succeeded(&self, r: SyncReport) {
        let mut s = self.state();
        let secs = r.took.as_secs_f64();
        if r.full {
            s.full.observe(secs);
        } else {
            s.partial.observe(secs);
        }
        s.syncs_ok += 1;
        s.chains_written += r.chains_written as u64;
        s.nat_rules = r.nat_rules;
        s.filter_rules = r.filter_rules;
        s.last_success = Some(SystemTime::now());
        s.last_error = None;
    }

    pub fn failed(&self, error: String) {
        let mut s = self.state();
        s.syncs_failed += 1;
        s.last_error = Some(error);
    }

    /// `/healthz`: healthy once a sync succeeded and the last one did.
    pub fn health(&self) -> (&'static str, String) {
        let s = self.state();
        match (&s.last_error, s.last_success) {
            (Some(e), _) => (
                "503 Service Unavailable",
                format!("rule sync failing: {e}\n"),
            ),
            (None, None) => ("503 Service Unavailable", "no rule sync yet\n".into()),
            (None, Some(_)) => ("200 OK", "ok".into()),
        }
    }

    pub fn render(&self, out: &mut String) {
        let s = self.state();
        let both = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        };
        both(
            out,
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "Full rule sync latency in seconds.",
        );
        s.full
            .write(out, "kubeproxy_sync_full_proxy_rules_duration_seconds", "");
        both(
            out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "Partial rule sync latency in seconds.",
        );
        s.partial.write(
            out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "",
        );
        let _ = writeln!(
            out,
            "# HELP skiff_proxy_syncs_total Rule syncs by result.\n# TYPE skiff_proxy_syncs_total counter\n\
             skiff_proxy_syncs_total{{result=\"success\"}} {}\nskiff_proxy_syncs_total{{result=\"error\"}} {}",
            s.syncs_ok, s.syncs_failed
        );
        let _ = writeln!(
            out,
            "# HELP kubeproxy_iptables_restore_failures_total Failed iptables-restore runs.\n\
             # TYPE kubeproxy_iptables_restore_failures_total counter\nkubeproxy_iptables_restore_failures_total {}",
            s.syncs_failed
        );
        let _ = writeln!(
            out,
            "# HELP skiff_proxy_chains_written_total Chains declared and refilled by syncs.\n\
             # TYPE skiff_proxy_chains_written_total counter\nskiff_proxy_chains_written_total {}",
            s.chains_written
        );
        let _ = writeln!(
            out,
            "# HELP kubeproxy_sync_proxy_rules_iptables_total Rules the proxy keeps, by table.\n\
             # TYPE kubeproxy_sync_proxy_rules_iptables_total gauge\n\
             kubeproxy_sync_proxy_rules_iptables_total{{table=\"nat\"}} {}\n\
             kubeproxy_sync_proxy_rules_iptables_total{{table=\"filter\"}} {}",
            s.nat_rules, s.filter_rules
        );
        if let Some(t) = s.last_success {
            let secs = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let _ = writeln!(
                out,
                "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds When rules were last synced.\n\
                 # TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\n\
                 kubeproxy_sync_proxy_rules_last_timestamp_seconds {secs}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_last_sync() {
        let m = SyncMetrics::default();
        assert_eq!(m.health().0, "503 Service Unavailable");
        m.succeeded(SyncReport {
            full: true,
            took: Duration::from_millis(3),
            chains_written: 4,
            nat_rules: 10,
            filter_rules: 2,
        });
        assert_eq!(m.health().0, "200 OK");
        m.failed("iptables-restore: exit 1".into());
        assert!(m.health().1.contains("exit 1"));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("kubeproxy_sync_full_proxy_rules_duration_seconds_count 1"));
        assert!(out.contains("skiff_proxy_syncs_total{result=\"error\"} 1"));
        assert!(out.contains("kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} 10"));
    }
}
