//! Paged lists served from the watch cache. The first page of a list is cut
//! from a snapshot of the cache (the objects under a prefix at one revision,
//! shared `Arc`s, so a snapshot costs a pointer per object); the snapshot is
//! kept a while so the later pages (`continue`) show the same revision
//! without a storage read, as upstream's cache snapshots do. A page whose
//! snapshot has gone falls back to storage at that revision.

use crate::watchcache::Entry;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Snapshots kept per resource; a client paging through a list needs one.
const KEPT: usize = 16;
/// How long a snapshot serves continuations (upstream's tokens last until
/// compaction, about 5 minutes; past this storage answers them).
const KEEP_FOR: Duration = Duration::from_secs(120);

struct Snapshot {
    prefix: String,
    revision: i64,
    items: Arc<[Arc<Entry>]>,
    taken: Instant,
}

#[derive(Default)]
pub struct ListSnapshots {
    kept: Mutex<VecDeque<Snapshot>>,
}

impl ListSnapshots {
    /// The snapshot of `prefix` at `revision`, if one is kept.
    pub fn at(&self, prefix: &str, revision: i64) -> Option<Arc<[Arc<Entry>]>> {
        let mut kept = self.kept.lock().expect("snapshots lock");
        kept.retain(|s| s.taken.elapsed() < KEEP_FOR);
        kept.iter()
            .find(|s| s.revision == revision && s.prefix == prefix)
            .map(|s| s.items.clone())
    }

    /// Keeps `items`, the objects under `prefix` at `revision`, for the pages
    /// after the first; returns the kept copy (an earlier one of the same
    /// revision if there is one).
    pub fn keep(&self, prefix: &str, revision: i64, items: Vec<Arc<Entry>>) -> Arc<[Arc<Entry>]> {
        if let Some(items) = self.at(prefix, revision) {
            return items;
        }
        let items: Arc<[Arc<Entry>]> = items.into();
        let mut kept = self.kept.lock().expect("snapshots lock");
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(Snapshot {
            prefix: prefix.to_string(),
            revision,
            items: items.clone(),
            taken: Instant::now(),
        });
        items
    }
}
