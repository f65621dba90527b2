//! Spacing out the reconciles of one object. A ReplicaSet of 1,000 pods is
//! triggered by every change of every one of its pods, and each reconcile
//! looks at all 1,000: run back to back through a burst, the 30 sets of the
//! 30,000-pod benchmark took a fifth of the server's CPU. A reconcile that
//! starts within `gap` of the previous one's end waits for the rest of it;
//! the triggers arriving meanwhile are folded into the next one (kube's
//! controller runs one reconcile per object at a time and queues one more).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered before the ones past their gap are forgotten.
const REMEMBERED: usize = 1024;

pub struct Pacer {
    gap: Duration,
    ended: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    pub fn new(gap: Duration) -> Pacer {
        Pacer {
            gap,
            ended: Mutex::default(),
        }
    }

    /// How long a reconcile of `key` starting at `now` should wait.
    pub fn wait_for(&self, key: &str, now: Instant) -> Duration {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended
            .get(key)
            .map(|t| (*t + self.gap).saturating_duration_since(now))
            .unwrap_or_default()
    }

    /// Waits until a reconcile of `key` may start.
    pub async fn pace(&self, key: &str) {
        let wait = self.wait_for(key, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Notes that a reconcile of `key` ended at `now`.
    pub fn ended(&self, key: &str, now: Instant) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.len() >= REMEMBERED {
            ended.retain(|_, t| now.saturating_duration_since(*t) < self.gap);
        }
        ended.insert(key.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_soon_after_the_last_waits_for_the_gap() {
        let p = Pacer::new(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(p.wait_for("ns/a", t), Duration::ZERO, "first: at once");
        p.ended("ns/a", t);
        assert_eq!(
            p.wait_for("ns/a", t + Duration::from_millis(30)),
            Duration::from_millis(70)
        );
        assert_eq!(
            p.wait_for("ns/a", t + Duration::from_millis(150)),
            Duration::ZERO
        );
        assert_eq!(p.wait_for("ns/b", t), Duration::ZERO, "keys are apart");
    }

    #[test]
    fn keys_past_their_gap_are_forgotten() {
        let p = Pacer::new(Duration::from_millis(100));
        let t = Instant::now();
        for i in 0..REMEMBERED {
            p.ended(&format!("ns/{i}"), t);
        }
        p.ended("ns/late", t + Duration::from_secs(1));
        assert_eq!(p.ended.lock().unwrap().len(), 1);
    }
}
