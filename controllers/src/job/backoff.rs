//! The delay before a failed Job's pods are re-created, as upstream's
//! back-off store: 10 s after the first failure since the last success,
//! doubling with each further one, at most 6 minutes; counted from when
//! the last failed pod finished.

use super::pods;
use k8s_openapi::jiff::Timestamp;
use skiff_machinery::client::CachedPod;
use std::time::Duration;

pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub failures_after_last_success: i32,
    pub last_failure: Option<Timestamp>,
}

impl Record {
    /// The record after these newly finished pods (`newBackoffRecord`).
    pub fn after(&self, succeeded: &[&CachedPod], failed: &[&CachedPod]) -> Record {
        let mut failed_at: Vec<Timestamp> = failed.iter().map(|p| finished_at(p)).collect();
        failed_at.sort();
        if succeeded.is_empty() {
            let Some(last) = failed_at.last() else {
                return self.clone();
            };
            return Record {
                failures_after_last_success: self.failures_after_last_success
                    + failed_at.len() as i32,
                last_failure: Some(*last),
            };
        }
        let last_success = succeeded.iter().map(|p| finished_at(p)).max();
        let after: Vec<&Timestamp> = failed_at
            .iter()
            .filter(|t| Some(**t) > last_success)
            .collect();
        Record {
            failures_after_last_success: after.len() as i32,
            last_failure: after.last().map(|t| **t),
        }
    }

    pub fn remaining(&self, now: Timestamp) -> Duration {
        remaining(self.failures_after_last_success, self.last_failure, now)
    }
}

/// How long to wait after `failures` failures, the last at `last`.
pub fn remaining(failures: i32, last: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(last) = last.filter(|_| failures > 0) else {
        return Duration::ZERO;
    };
    let mut backoff = DEFAULT_BACKOFF;
    for _ in 1..failures {
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if backoff == MAX_BACKOFF {
            break;
        }
    }
    let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

/// When a pod finished: its Ready condition turning False once terminal,
/// else its containers' last finish, else its deletion, else its creation.
pub fn finished_at(p: &CachedPod) -> Timestamp {
    let status = p.status.as_ref();
    let terminal = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let ready_false = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref())
        .filter(|_| terminal)
        .map(|t| t.0);
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    ready_false
        .or(containers)
        .or(p.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or(p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_else(Timestamp::now)
}

/// Per index (backoffLimitPerIndex): the delay before re-creating the index
/// whose last failed pod is `last`, from that pod's failure counts.
pub fn remaining_for_index(last: Option<&CachedPod>, now: Timestamp) -> Duration {
    let Some(p) = last else {
        return Duration::ZERO;
    };
    let count = pods::annotation_count(p, pods::INDEX_FAILURE_COUNT)
        + pods::annotation_count(p, pods::INDEX_IGNORED_FAILURE_COUNT)
        + 1;
    remaining(count, Some(finished_at(p)), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_ten_seconds_to_six_minutes() {
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| {
            t0.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s))
                .unwrap()
        };
        assert_eq!(remaining(0, Some(t0), t0), Duration::ZERO);
        assert_eq!(remaining(1, Some(t0), at(3)), Duration::from_secs(7));
        assert_eq!(remaining(2, Some(t0), t0), Duration::from_secs(20));
        assert_eq!(remaining(3, Some(t0), t0), Duration::from_secs(40));
        assert_eq!(remaining(7, Some(t0), t0), Duration::from_secs(360));
        assert_eq!(remaining(30, Some(t0), at(400)), Duration::ZERO);
    }
}
