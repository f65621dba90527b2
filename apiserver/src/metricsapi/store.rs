//! The last two scrapes of each node and the usage they give, as
//! metrics-server's storage computes it: cpu is the growth of the
//! cumulative counter over the window between two points of the same
//! container (same start), memory the latest working set. A container
//! seen only once may use its start as the earlier point (cpu 0 then) when
//! it started within one resolution but at least 10 s before the point.
//! A pod has metrics only when all its containers have.

use super::prometheus::{Batch, Point};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Below this a container's start is too close to its point to give a rate.
const FRESH_MIN: Duration = Duration::from_secs(10);

/// Usage over a window ending at `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanocores: u64,
    pub memory: u64,
    pub timestamp_ms: i64,
    pub window: Duration,
}

/// One node's two latest scrapes.
#[derive(Debug, Clone)]
pub struct Entry {
    pub last: Batch,
    pub prev: Option<Batch>,
    /// When `last` was taken (this server's clock).
    pub scraped: Instant,
}

impl Entry {
    pub fn new(batch: Batch, at: Instant) -> Entry {
        Entry {
            last: batch,
            prev: None,
            scraped: at,
        }
    }

    /// Takes `batch` as the latest scrape; the one before becomes `prev`.
    pub fn push(&mut self, batch: Batch, at: Instant) {
        let newer = match (&batch.node, &self.last.node) {
            (Some(n), Some(l)) => n.timestamp_ms > l.timestamp_ms,
            _ => true,
        };
        if newer {
            self.prev = Some(std::mem::replace(&mut self.last, batch));
        }
        self.scraped = at;
    }

    /// The node's usage between its two latest points.
    pub fn node(&self) -> Option<Usage> {
        usage(&self.last.node?, &self.prev.as_ref()?.node?)
    }

    /// Each container's usage of pod `ns/name`, with the earliest point's
    /// time and window; `None` unless every container has one.
    pub fn pod(&self, ns: &str, name: &str, resolution: Duration) -> Option<PodUsage> {
        let key = (ns.to_string(), name.to_string());
        let last = self.last.pods.get(&key)?;
        let prev = self.prev.as_ref().and_then(|p| p.pods.get(&key));
        let mut containers = Vec::with_capacity(last.len());
        let mut earliest: Option<Usage> = None;
        for (cname, point) in last {
            let before = prev
                .and_then(|p| p.get(cname))
                .filter(|b| b.start_ms == point.start_ms && b.timestamp_ms < point.timestamp_ms)
                .copied()
                .or_else(|| fresh_start(point, resolution))?;
            let u = usage(point, &before)?;
            if earliest.is_none_or(|e| u.timestamp_ms < e.timestamp_ms) {
                earliest = Some(u);
            }
            containers.push((cname.clone(), u));
        }
        containers.sort_by(|a, b| a.0.cmp(&b.0));
        let e = earliest?;
        Some(PodUsage {
            containers,
            timestamp_ms: e.timestamp_ms,
            window: e.window,
        })
    }
}

/// A pod's containers' usage, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub containers: Vec<(String, Usage)>,
    pub timestamp_ms: i64,
    pub window: Duration,
}

/// The container's start as its earlier point, when it is recent enough.
fn fresh_start(p: &Point, resolution: Duration) -> Option<Point> {
    let age = p.timestamp_ms - p.start_ms;
    let fresh = p.start_ms > 0
        && age < resolution.as_millis() as i64
        && age >= FRESH_MIN.as_millis() as i64;
    fresh.then_some(Point {
        timestamp_ms: p.start_ms,
        cpu_ns: 0,
        ..*p
    })
}

/// Usage between two points (metrics-server's `resourceUsage`).
pub fn usage(last: &Point, prev: &Point) -> Option<Usage> {
    if last.start_ms < prev.start_ms || last.cpu_ns < prev.cpu_ns {
        return None;
    }
    let window_ms = last.timestamp_ms - prev.timestamp_ms;
    if window_ms <= 0 {
        return None;
    }
    let used = (last.cpu_ns - prev.cpu_ns) as u128;
    Some(Usage {
        cpu_nanocores: u64::try_from(used * 1000 / window_ms as u128).unwrap_or(u64::MAX),
        memory: last.memory,
        timestamp_ms: last.timestamp_ms,
        window: Duration::from_millis(window_ms as u64),
    })
}

/// Every node's entry, by node name.
pub type Store = HashMap<String, Entry>;

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64, cpu_ms: u64, memory: u64, start: i64) -> Point {
        Point {
            timestamp_ms: ts,
            cpu_ns: cpu_ms * 1_000_000,
            memory,
            start_ms: start,
        }
    }

    fn batch(node: Point, containers: &[(&str, Point)]) -> Batch {
        let mut b = Batch {
            node: Some(node),
            ..Batch::default()
        };
        let pod = b
            .pods
            .entry(("default".to_string(), "p".to_string()))
            .or_default();
        for (n, p) in containers {
            pod.insert(n.to_string(), *p);
        }
        b
    }

    const RES: Duration = Duration::from_secs(15);

    #[test]
    fn cpu_rate_over_the_window_and_latest_memory() {
        let u = usage(&point(20_000, 7_500, 64, 0), &point(5_000, 0, 32, 0)).unwrap();
        assert_eq!(u.cpu_nanocores, 500_000_000, "7.5 s of cpu in 15 s");
        assert_eq!((u.memory, u.window), (64, Duration::from_secs(15)));
        assert_eq!(usage(&point(20_000, 1, 0, 0), &point(5_000, 2, 0, 0)), None);
        assert_eq!(usage(&point(5_000, 2, 0, 0), &point(5_000, 1, 0, 0)), None);
        assert_eq!(usage(&point(9_000, 2, 0, 1), &point(5_000, 1, 0, 2)), None);
    }

    #[test]
    fn nodes_and_pods_need_two_points() {
        let now = Instant::now();
        let mut e = Entry::new(
            batch(point(1_000, 0, 1, 0), &[("c", point(1_000, 100, 8, 500))]),
            now,
        );
        assert_eq!(e.node(), None);
        assert_eq!(e.pod("default", "p", RES), None);
        e.push(
            batch(
                point(3_000, 1_000, 2, 0),
                &[
                    ("c", point(3_000, 300, 16, 500)),
                    ("d", point(3_000, 9, 4, 2_900)),
                ],
            ),
            now,
        );
        assert_eq!(e.node().unwrap().cpu_nanocores, 500_000_000);
        assert_eq!(
            e.pod("default", "p", RES),
            None,
            "container d has no earlier point and is too fresh for its start to count"
        );
        e.push(
            batch(
                point(5_000, 2_000, 2, 0),
                &[
                    ("c", point(5_000, 500, 16, 500)),
                    ("d", point(5_000, 29, 4, 2_900)),
                ],
            ),
            now,
        );
        let p = e.pod("default", "p", RES).unwrap();
        assert_eq!(p.containers.len(), 2);
        assert_eq!(p.containers[0].0, "c");
        assert_eq!(p.containers[0].1.cpu_nanocores, 100_000_000);
        assert_eq!(p.containers[1].1.cpu_nanocores, 10_000_000);
        assert_eq!(p.window, Duration::from_secs(2));
        assert_eq!(e.pod("default", "other", RES), None);
    }

    #[test]
    fn a_fresh_container_counts_from_its_start() {
        // Started 12 s before its only point: 6 s of cpu is half a core.
        let e = Entry::new(
            batch(
                point(20_000, 0, 1, 0),
                &[("c", point(20_000, 6_000, 8, 8_000))],
            ),
            Instant::now(),
        );
        let p = e.pod("default", "p", RES).unwrap();
        assert_eq!(p.containers[0].1.cpu_nanocores, 500_000_000);
        assert_eq!(p.window, Duration::from_secs(12));
        // A restarted container (new start) does not use the old point.
        let mut e = e;
        e.push(
            batch(
                point(40_000, 0, 1, 0),
                &[("c", point(40_000, 1, 8, 39_000))],
            ),
            Instant::now(),
        );
        assert_eq!(e.pod("default", "p", RES), None);
    }

    #[test]
    fn an_older_scrape_does_not_replace_a_newer_one() {
        let mut e = Entry::new(batch(point(5_000, 10, 1, 0), &[]), Instant::now());
        e.push(batch(point(5_000, 10, 1, 0), &[]), Instant::now());
        assert!(e.prev.is_none());
    }
}
