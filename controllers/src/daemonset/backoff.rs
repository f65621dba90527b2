//! The back-off for deleting failed daemon pods, as upstream's
//! failedPodsBackoff (flowcontrol.Backoff, 1 s doubling to 15 min): a node
//! whose kubelet keeps rejecting the pod would otherwise see a create and a
//! delete in a hot loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INITIAL: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl Backoff {
    /// The delay still to wait when `key` failed less than its back-off ago.
    pub fn remaining(&self, key: &str) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (delay, since) = entries.get(key)?;
        delay.checked_sub(since.elapsed()).filter(|d| !d.is_zero())
    }

    /// Records a failure: the delay doubles, or starts again at one second
    /// when the last failure is long past.
    pub fn next(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let delay = match entries.get(key) {
            Some((d, since)) if now.duration_since(*since) <= 2 * MAX => (*d * 2).min(MAX),
            _ => INITIAL,
        };
        entries.insert(key.into(), (delay, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles() {
        let b = Backoff::default();
        assert_eq!(b.remaining("k"), None);
        b.next("k");
        assert!(b.remaining("k").is_some_and(|d| d <= INITIAL));
        b.next("k");
        assert!(b
            .remaining("k")
            .is_some_and(|d| d > INITIAL && d <= 2 * INITIAL));
    }
}
