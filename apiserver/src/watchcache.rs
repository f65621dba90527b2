//! The watch cache: one per stored resource, fed by a single storage watch.
//! It holds every object in memory (parsed and pre-serialized, with its
//! resourceVersion) and a window of recent events, so lists at
//! `resourceVersion=0`, consistent lists when current, and every client watch
//! are served from memory, as upstream's cacher does.

use crate::listsnapshots::ListSnapshots;
use crate::sharedjson::SharedJson;
use crate::storage::{EventKind, KeyValue, Storage, StorageError, WatchEvent};
use serde_json::Value;
use skiff_machinery::fields::Selector as FieldSelector;
use skiff_machinery::labels::Selector as LabelSelector;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Events kept for watches that resume from an older resourceVersion: all
/// of the last `HISTORY_FRESH` (upstream's cacher keeps 75 s so a watcher
/// that fell behind in a burst can catch up rather than re-list), never
/// fewer than `HISTORY_MIN` events nor more than `HISTORY_MAX`, and never
/// objects of more than `HISTORY_MAX_BYTES` in all: a burst of large
/// objects must not hold the memory of every version of each (a watcher
/// that falls further behind re-lists, from the cache).
const HISTORY_FRESH: Duration = Duration::from_secs(75);
const HISTORY_MIN: usize = 1_000;
const HISTORY_MAX: usize = 100_000;
const HISTORY_MAX_BYTES: usize = 16 << 20;
/// What the histories of all resources may hold together. A resource whose
/// events take the total over it trims its own oldest (down to
/// `HISTORY_MIN`), so a burst in pods, replicasets, deployments, nodes and
/// events at once holds this much, not `HISTORY_MAX_BYTES` of each. Open
/// watches never read the history (a watcher behind holds its own events,
/// see `Link`); it only serves watches resumed from an older version, and
/// 32 MB is still thousands of events of each busy resource (3,500 pod
/// updates), where a 30,000-pod burst used to leave 64 MB resident after it.
const HISTORY_BUDGET: usize = 32 << 20;
/// How far (in bytes of events) a watcher may fall behind before it is
/// closed. A watcher holds on to the events it has yet to send, so a slow
/// one (the server's own informers in a burst, say) catches up without
/// re-listing, and only one that stalls this far costs a re-list.
const WATCHER_BEHIND_MAX: u64 = 256 << 20;

/// One object as served: pre-serialized (with its resourceVersion) for lists
/// and watches, plus just what selectors look at. The parsed form is made on
/// demand, so a cache of many objects costs little more than their JSON, and
/// less where their JSON repeats (see `SharedJson`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub json: SharedJson,
    pub mod_revision: i64,
    /// Label keys and values: what label selectors look at, without the
    /// hash map a parsed object would need per entry.
    labels: Box<[(Box<str>, Box<str>)]>,
    fields: Box<[(&'static str, Box<str>)]>,
}

impl Entry {
    /// Builds an entry from stored bytes, stamping the resourceVersion and
    /// keeping the values of the given selectable fields.
    pub fn from_kv(kv: &KeyValue, fields: &[&'static str]) -> Option<Entry> {
        let mut object: Value = match serde_json::from_slice(&kv.value) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(key = %kv.key, error = %e, "undecodable object in storage");
                return None;
            }
        };
        crate::meta::set_resource_version(&mut object, kv.mod_revision);
        Some(Entry::from_object(
            kv.key.clone(),
            &object,
            kv.mod_revision,
            fields,
        ))
    }

    pub fn from_object(
        key: String,
        object: &Value,
        mod_revision: i64,
        fields: &[&'static str],
    ) -> Entry {
        let json = SharedJson::encode(object);
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect();
        let fields = fields
            .iter()
            .map(|f| {
                (
                    *f,
                    skiff_machinery::fields::field_value(object, f).into_boxed_str(),
                )
            })
            .collect();
        Entry {
            key,
            json,
            mod_revision,
            labels,
            fields,
        }
    }

    /// The object, parsed.
    pub fn object(&self) -> Value {
        serde_json::from_slice(&self.json.to_vec()).unwrap_or(Value::Null)
    }

    /// Roughly the memory the entry holds: its text, its key and what
    /// selectors read, with the allocator's share of each piece.
    pub fn size(&self) -> usize {
        const PER_ALLOCATION: usize = 16;
        let labels: usize = self
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2 * PER_ALLOCATION)
            .sum();
        let fields: usize = self
            .fields
            .iter()
            .map(|(_, v)| v.len() + PER_ALLOCATION)
            .sum();
        std::mem::size_of::<Entry>()
            + self.json.held_bytes()
            + self.key.len()
            + labels
            + fields
            + 4 * PER_ALLOCATION
    }

    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches_with(|k| {
            self.labels
                .iter()
                .find(|(name, _)| &**name == k)
                .map(|(_, v)| &**v)
        }) && fields.matches_with(|f| {
            self.fields
                .iter()
                .find(|(name, _)| *name == f)
                .map(|(_, v)| &**v)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub entry: Arc<Entry>,
    pub prev: Option<Arc<Entry>>,
    pub revision: i64,
    /// When the cache saw it; ages the history.
    seen: Instant,
}

/// One link of the chain of events every watcher walks: a watcher holds the
/// link of the last event it took, which keeps the events after it alive
/// until it has taken them, and nothing once it is at the end.
pub struct Link {
    event: Option<Arc<CacheEvent>>,
    next: OnceLock<Arc<Link>>,
    /// The size of every event published up to and including this one.
    bytes_through: u64,
}

impl Drop for Link {
    /// Unlinks a long chain one link at a time (dropping it recursively
    /// could overflow the stack).
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(link) = next {
            match Arc::try_unwrap(link) {
                Ok(mut link) => next = link.next.take(),
                Err(_) => break,
            }
        }
    }
}

/// Where a watcher is in the chain of events.
pub struct Cursor {
    at: Arc<Link>,
    wake: watch::Receiver<i64>,
    published_bytes: Arc<AtomicU64>,
}

impl Cursor {
    /// The next event, if it has been published.
    pub fn next(&mut self) -> Option<Arc<CacheEvent>> {
        let next = self.at.next.get()?.clone();
        self.at = next;
        self.at.event.clone()
    }

    /// Marks what has been published as seen by `changed`.
    pub fn mark_seen(&mut self) {
        self.wake.borrow_and_update();
    }

    /// Resolves when something was published since `mark_seen`, or never
    /// when the cache is gone.
    pub async fn changed(&mut self) {
        if self.wake.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// A cursor on a chain of its own, `behind` bytes behind its end: for
    /// tests of what serves watches.
    #[cfg(test)]
    pub(crate) fn detached(behind: u64) -> Cursor {
        Cursor {
            at: Arc::new(Link {
                event: None,
                next: OnceLock::new(),
                bytes_through: 0,
            }),
            wake: watch::channel(0).1,
            published_bytes: Arc::new(AtomicU64::new(behind)),
        }
    }

    /// Whether this watcher is so far behind that it should be closed.
    pub fn too_far_behind(&self) -> bool {
        let published = self.published_bytes.load(Ordering::Relaxed);
        published.saturating_sub(self.at.bytes_through) > WATCHER_BEHIND_MAX
    }
}

struct State {
    items: BTreeMap<String, Arc<Entry>>,
    revision: i64,
    /// The last link of the chain of events.
    tail: Arc<Link>,
    history: VecDeque<Arc<CacheEvent>>,
    /// The serialized size of the objects in `history`.
    history_bytes: usize,
    /// Watches may start from any revision at or above this one.
    floor: i64,
}

impl Default for State {
    fn default() -> State {
        State {
            items: BTreeMap::new(),
            revision: 0,
            tail: Arc::new(Link {
                event: None,
                next: OnceLock::new(),
                bytes_through: 0,
            }),
            history: VecDeque::new(),
            history_bytes: 0,
            floor: 0,
        }
    }
}

impl State {
    /// Appends `ev` to the chain of events watchers walk; returns the size
    /// of every event published up to it.
    fn link(&mut self, ev: &Arc<CacheEvent>) -> u64 {
        let bytes_through = self.tail.bytes_through + ev.entry.size() as u64;
        let link = Arc::new(Link {
            event: Some(ev.clone()),
            next: OnceLock::new(),
            bytes_through,
        });
        let _ = self.tail.next.set(link.clone());
        self.tail = link;
        bytes_through
    }

    /// Appends `ev` to the history, counting its size here and in `shared`,
    /// and trims what no longer needs keeping.
    fn record(&mut self, ev: Arc<CacheEvent>, shared: &AtomicUsize) {
        let size = ev.entry.size();
        self.history_bytes += size;
        shared.fetch_add(size, Ordering::Relaxed);
        self.history.push_back(ev);
        self.trim_history(shared);
    }

    /// Drops the events the history no longer needs to keep; `shared` is the
    /// size of every resource's history, this one's included.
    fn trim_history(&mut self, shared: &AtomicUsize) {
        while let Some(oldest) = self.history.front() {
            let len = self.history.len();
            let too_many = len > HISTORY_MAX || self.history_bytes > HISTORY_MAX_BYTES;
            let over_budget = shared.load(Ordering::Relaxed) > HISTORY_BUDGET;
            let stale = oldest.seen.elapsed() >= HISTORY_FRESH;
            if !too_many && (len <= HISTORY_MIN || !(over_budget || stale)) {
                break;
            }
            let size = oldest.entry.size();
            self.floor = oldest.revision;
            self.history_bytes -= size;
            shared.fetch_sub(size, Ordering::Relaxed);
            self.history.pop_front();
        }
    }
}

/// What a cache holds, for the server's metrics.
pub struct CacheStats {
    pub objects: usize,
    pub history_events: usize,
    pub history_bytes: usize,
}

pub struct WatchCache {
    pub prefix: String,
    /// The selectable fields of the resources stored under this prefix.
    pub fields: Vec<&'static str>,
    state: RwLock<State>,
    /// The size of every event published so far (see `Link`).
    published_bytes: Arc<AtomicU64>,
    revision: watch::Sender<i64>,
    /// Snapshots that paged lists are served from.
    pub snapshots: ListSnapshots,
    /// The size of all caches' histories together (see `HISTORY_BUDGET`).
    history_total: Arc<AtomicUsize>,
    /// The task that feeds the cache, and whether it was stopped (a custom
    /// resource no longer served): its watches end then.
    feeder: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    stopped: watch::Sender<bool>,
}

/// What a watch starts with: events since its revision, then the live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: Cursor,
    pub revision: i64,
}

impl WatchCache {
    /// Starts the cache and the task that feeds it from storage.
    /// `history_total` is shared by all caches of the server.
    /// `extra_fields` are fields selectors may name beyond the built-in
    /// ones (a CRD's selectable fields).
    pub fn start(
        storage: Arc<dyn Storage>,
        prefix: String,
        history_total: Arc<AtomicUsize>,
        extra_fields: &[&'static str],
    ) -> Arc<WatchCache> {
        let cache = Self::unfed_with(prefix, history_total, extra_fields);
        let feeder = cache.clone();
        let task = tokio::spawn(async move { feeder.feed(storage).await });
        *cache.feeder.lock().expect("feeder lock") = Some(task.abort_handle());
        // A burst's events age out even when no new event comes to push them.
        let aging = Arc::downgrade(&cache);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(cache) = aging.upgrade() else { return };
                let mut st = cache.state.write().expect("cache lock");
                st.trim_history(&cache.history_total);
            }
        });
        cache
    }

    /// A cache nothing feeds: empty, at revision 0.
    pub fn unfed(prefix: String) -> Arc<WatchCache> {
        Self::unfed_with(prefix, Arc::default(), &[])
    }

    fn unfed_with(
        prefix: String,
        history_total: Arc<AtomicUsize>,
        extra_fields: &[&'static str],
    ) -> Arc<WatchCache> {
        let mut fields: Vec<&'static str> = Vec::new();
        let builtin = skiff_machinery::catalog::RESOURCES
            .iter()
            .filter(|r| r.key_prefix() == prefix)
            .map(|r| (r.group, r.plural));
        // A custom resource's prefix matches no built-in one: the common fields.
        for (group, plural) in builtin.chain([("", "")]) {
            for f in skiff_machinery::fields::supported_fields(group, plural) {
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
        }
        for f in extra_fields {
            if !fields.contains(f) {
                fields.push(f);
            }
        }
        Arc::new(WatchCache {
            prefix,
            fields,
            state: RwLock::new(State::default()),
            published_bytes: Arc::default(),
            revision: watch::channel(0).0,
            snapshots: ListSnapshots::default(),
            history_total,
            feeder: Default::default(),
            stopped: watch::channel(false).0,
        })
    }

    /// Stops feeding the cache and ends its watches.
    pub fn stop(&self) {
        if let Some(task) = self.feeder.lock().expect("feeder lock").take() {
            task.abort();
        }
        self.stopped.send_replace(true);
    }

    /// Resolves once the cache is stopped.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    async fn feed(self: Arc<Self>, storage: Arc<dyn Storage>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.sync_once(&storage).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(prefix = %self.prefix, error = %e, "watch cache resyncing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Lists, then follows the storage watch until it ends.
    async fn sync_once(&self, storage: &Arc<dyn Storage>) -> Result<(), StorageError> {
        let list = storage.list(&self.prefix, None, 0, 0).await?;
        let mut stream = storage.watch(&self.prefix, list.revision).await?;
        {
            let mut st = self.state.write().expect("cache lock");
            let items: BTreeMap<String, Arc<Entry>> = list
                .items
                .iter()
                .filter_map(|kv| {
                    Entry::from_kv(kv, &self.fields).map(|e| (kv.key.clone(), Arc::new(e)))
                })
                .collect();
            // Tell watchers about what changed while we were away, then continue.
            let old = std::mem::take(&mut st.items);
            for (key, entry) in &items {
                match old.get(key) {
                    Some(prev) if prev.mod_revision == entry.mod_revision => {}
                    prev => self.publish(
                        &mut st,
                        EventType::Added.or_modified(prev.is_some()),
                        entry.clone(),
                        prev.cloned(),
                        list.revision,
                    ),
                }
            }
            for (key, prev) in &old {
                if !items.contains_key(key) {
                    let gone = Arc::new(Entry {
                        mod_revision: list.revision,
                        ..Entry::clone(prev)
                    });
                    self.publish(
                        &mut st,
                        EventType::Deleted,
                        gone,
                        Some(prev.clone()),
                        list.revision,
                    );
                }
            }
            st.items = items;
            if st.floor == 0 {
                st.floor = list.revision;
            }
            st.revision = st.revision.max(list.revision);
            self.revision.send_replace(st.revision);
        }
        while let Some(ev) = stream.recv().await {
            self.apply(ev?);
        }
        Err(StorageError::Unavailable("storage watch ended".into()))
    }

    fn apply(&self, ev: WatchEvent) {
        let mut st = self.state.write().expect("cache lock");
        let rev = ev.kv.mod_revision;
        match ev.kind {
            EventKind::Progress => {}
            EventKind::Put => {
                if let Some(entry) = Entry::from_kv(&ev.kv, &self.fields) {
                    let entry = Arc::new(entry);
                    let prev = st.items.insert(ev.kv.key.clone(), entry.clone());
                    self.publish(
                        &mut st,
                        EventType::Added.or_modified(prev.is_some()),
                        entry,
                        prev,
                        rev,
                    );
                }
            }
            EventKind::Delete => {
                if let Some(prev) = st.items.remove(&ev.kv.key) {
                    // The deleted object is reported at the delete's revision.
                    let mut object = prev.object();
                    crate::meta::set_resource_version(&mut object, rev);
                    let gone = Entry::from_object(prev.key.clone(), &object, rev, &self.fields);
                    self.publish(&mut st, EventType::Deleted, Arc::new(gone), Some(prev), rev);
                }
            }
        }
        st.revision = st.revision.max(rev);
        self.revision.send_replace(st.revision);
    }

    fn publish(
        &self,
        st: &mut State,
        kind: EventType,
        entry: Arc<Entry>,
        prev: Option<Arc<Entry>>,
        revision: i64,
    ) {
        let ev = Arc::new(CacheEvent {
            kind,
            entry,
            prev,
            revision,
            seen: Instant::now(),
        });
        let bytes_through = st.link(&ev);
        self.published_bytes.store(bytes_through, Ordering::Relaxed);
        st.record(ev, &self.history_total);
    }

    pub fn stats(&self) -> CacheStats {
        let st = self.state.read().expect("cache lock");
        CacheStats {
            objects: st.items.len(),
            history_events: st.history.len(),
            history_bytes: st.history_bytes,
        }
    }

    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Grows with every event the cache publishes: a cheap way to tell
    /// whether anything changed since it was last read.
    pub fn published(&self) -> u64 {
        self.published_bytes.load(Ordering::Relaxed)
    }

    /// Waits until the cache has seen `rev`; false on timeout.
    pub async fn wait_for(&self, rev: i64, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= rev))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Every object under `prefix` (a namespace's prefix, or the whole resource),
    /// with the revision they were read at.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<Entry>>, i64) {
        let st = self.state.read().expect("cache lock");
        let end = String::from_utf8_lossy(&crate::storage::prefix_end(prefix)).into_owned();
        let items = st
            .items
            .range::<str, _>((Bound::Included(prefix), Bound::Excluded(end.as_str())))
            .map(|(_, e)| e.clone())
            .collect();
        (items, st.revision)
    }

    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.state
            .read()
            .expect("cache lock")
            .items
            .get(key)
            .cloned()
    }

    /// Subscribes to events after `after` (0: from now, with the current state
    /// returned as the backlog of ADDED events). `Err(floor)` if `after` is older
    /// than the kept history.
    pub fn subscribe(&self, after: i64, prefix: &str) -> Result<Subscription, i64> {
        let st = self.state.read().expect("cache lock");
        let live = Cursor {
            at: st.tail.clone(),
            wake: self.revision.subscribe(),
            published_bytes: self.published_bytes.clone(),
        };
        if after == 0 {
            let backlog = st
                .items
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, e)| {
                    Arc::new(CacheEvent {
                        kind: EventType::Added,
                        entry: e.clone(),
                        prev: None,
                        revision: e.mod_revision,
                        seen: Instant::now(),
                    })
                })
                .collect();
            return Ok(Subscription {
                backlog,
                live,
                revision: st.revision,
            });
        }
        if after < st.floor {
            return Err(st.floor);
        }
        let backlog = st
            .history
            .iter()
            .filter(|e| e.revision > after)
            .cloned()
            .collect();
        Ok(Subscription {
            backlog,
            live,
            revision: st.revision,
        })
    }
}

impl EventType {
    fn or_modified(self, existed: bool) -> EventType {
        if existed {
            EventType::Modified
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(revision: i64, padding: usize) -> Arc<CacheEvent> {
        // Text of each event's own, as objects' updates are (equal text is shared).
        let pad = format!("{revision}{}", "x".repeat(padding));
        let object = json!({
            "metadata": {"name": format!("p{revision}"), "labels": {"app": "web", "tier": "x"}},
            "data": {"pad": pad},
        });
        let entry = Entry::from_object(
            format!("/registry/pods/ns/p{revision}"),
            &object,
            revision,
            &[],
        );
        Arc::new(CacheEvent {
            kind: EventType::Added,
            entry: Arc::new(entry),
            prev: None,
            revision,
            seen: Instant::now(),
        })
    }

    #[test]
    fn entry_keeps_labels_for_selectors_and_its_exact_text() {
        let ev = event(1, 100);
        let sel = |s: &str| LabelSelector::parse(s).unwrap();
        let none = FieldSelector::default();
        assert!(ev.entry.matches(&sel("app=web,tier in (x,y)"), &none));
        assert!(!ev.entry.matches(&sel("app=db"), &none));
        assert!(ev.entry.matches(&sel("!missing"), &none));
        assert_eq!(
            ev.entry.object()["data"]["pad"].as_str().unwrap(),
            format!("1{}", "x".repeat(100))
        );
        assert!(ev.entry.size() > ev.entry.json.len() + ev.entry.key.len());
    }

    #[test]
    fn fresh_history_is_kept_within_the_shared_budget() {
        let total = AtomicUsize::new(0);
        let mut st = State::default();
        for rev in 1..=3_000 {
            st.record(event(rev, 100), &total);
        }
        // Fresh, few and small: all kept.
        assert_eq!(st.history.len(), 3_000);
        assert_eq!(total.load(Ordering::Relaxed), st.history_bytes);

        // Another resource's burst took the total over the budget: this
        // one's next event trims it to its minimum, oldest first.
        total.fetch_add(HISTORY_BUDGET, Ordering::Relaxed);
        st.record(event(3_001, 100), &total);
        assert_eq!(st.history.len(), HISTORY_MIN);
        assert_eq!(
            st.history.front().unwrap().revision,
            3_001 - HISTORY_MIN as i64 + 1
        );
        assert_eq!(st.floor, 3_001 - HISTORY_MIN as i64);
        assert_eq!(
            total.load(Ordering::Relaxed) - HISTORY_BUDGET,
            st.history_bytes,
            "the shared total follows what this history dropped"
        );
    }

    #[test]
    fn one_resource_never_holds_more_than_its_own_cap() {
        let total = AtomicUsize::new(0);
        let mut st = State::default();
        for rev in 1..=1_200 {
            st.record(event(rev, 64 << 10), &total);
        }
        assert!(st.history_bytes <= HISTORY_MAX_BYTES);
        assert!(st.history.len() < 1_200);
        assert_eq!(total.load(Ordering::Relaxed), st.history_bytes);
    }

    fn cursor_at_tail(st: &State, published: &Arc<AtomicU64>) -> Cursor {
        Cursor {
            at: st.tail.clone(),
            wake: watch::channel(0).1,
            published_bytes: published.clone(),
        }
    }

    #[test]
    fn a_watcher_behind_keeps_what_it_has_yet_to_take() {
        let total = AtomicUsize::new(0);
        let published = Arc::new(AtomicU64::new(0));
        let mut st = State::default();
        let mut cursor = cursor_at_tail(&st, &published);
        for rev in 1..=1_200 {
            let ev = event(rev, 64 << 10);
            published.store(st.link(&ev), Ordering::Relaxed);
            st.record(ev, &total);
        }
        assert!(st.history.len() < 1_200, "the history was trimmed");
        assert!(!cursor.too_far_behind());
        let revisions: Vec<i64> = std::iter::from_fn(|| cursor.next())
            .map(|e| e.revision)
            .collect();
        assert_eq!(revisions, (1..=1_200).collect::<Vec<_>>());
        assert!(cursor.next().is_none());
    }

    #[test]
    fn a_watcher_too_far_behind_is_told_so() {
        let published = Arc::new(AtomicU64::new(0));
        let mut st = State::default();
        let cursor = cursor_at_tail(&st, &published);
        published.store(st.link(&event(1, 0)), Ordering::Relaxed);
        assert!(!cursor.too_far_behind());
        published.fetch_add(WATCHER_BEHIND_MAX, Ordering::Relaxed);
        assert!(cursor.too_far_behind());
    }

    #[test]
    fn a_long_chain_is_dropped_without_recursion() {
        let mut st = State::default();
        // A watcher that never moves holds every link after it.
        let stalled = cursor_at_tail(&st, &Arc::default());
        let ev = event(1, 0);
        for _ in 0..1_000_000 {
            st.link(&ev);
        }
        // Unlinks a million links; recursion would overflow the stack.
        drop(stalled);
        drop(st);
    }
}
