//! The embedded store: one redb file. A single writer thread applies queued
//! writes in order, each taking the next revision, and commits a whole batch
//! at once (durable before any caller is answered), so concurrent clients
//! share one fsync. Every write also appends to a revision-keyed log holding
//! the new and previous value: watches replay it, lists at an older revision
//! undo it, and compaction trims it.

use super::*;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, oneshot};

/// key → [create_rev][mod_rev][value]
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// revision → encoded `WatchEvent`
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// "revision", "compacted" → u64
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// redb's page cache.
const PAGE_CACHE: usize = 32 << 20;

/// Log entries dropped per compaction commit.
const COMPACT_CHUNK: usize = 10_000;

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;

enum Op {
    Create(String, Bytes),
    Update(String, Bytes, i64),
    Delete(String, Option<i64>),
    Compact(i64),
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<(i64, Option<KeyValue>)>>,
}

pub struct EmbeddedStorage {
    db: Arc<Database>,
    writes: Option<std::sync::mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    events: broadcast::Sender<Arc<Vec<WatchEvent>>>,
    /// Newest committed revision, readable without a transaction.
    revision: Arc<Mutex<(i64, i64)>>,
}

fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

impl EmbeddedStorage {
    pub fn open(path: &Path) -> Result<Self> {
        // The watch cache holds every object already; redb's page cache only
        // needs the hot B-tree pages, not a second copy of the data.
        let db = Database::builder()
            .set_cache_size(PAGE_CACHE)
            .create(path)
            .map_err(unavailable)?;
        let (revision, compacted) = {
            let txn = db.begin_write().map_err(unavailable)?;
            let state = {
                txn.open_table(KV).map_err(unavailable)?;
                txn.open_table(LOG).map_err(unavailable)?;
                let meta = txn.open_table(META).map_err(unavailable)?;
                let get = |k| meta.get(k).ok().flatten().map(|v| v.value()).unwrap_or(0) as i64;
                (get("revision"), get("compacted"))
            };
            txn.commit().map_err(unavailable)?;
            state
        };
        let db = Arc::new(db);
        let (events, _) = broadcast::channel(1024);
        let revision = Arc::new(Mutex::new((revision.max(1), compacted)));
        let (writes, queue) = std::sync::mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            events: events.clone(),
            revision: revision.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(unavailable)?;
        Ok(Self {
            db,
            writes: Some(writes),
            writer: Some(writer),
            events,
            revision,
        })
    }

    async fn submit(&self, op: Op) -> Result<(i64, Option<KeyValue>)> {
        let (reply, rx) = oneshot::channel();
        let writes = self
            .writes
            .as_ref()
            .ok_or_else(|| unavailable("store closed"))?;
        writes
            .send(Request { op, reply })
            .map_err(|_| unavailable("store closed"))?;
        rx.await.map_err(|_| unavailable("store writer stopped"))?
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T>> {
        let db = self.db.clone();
        async move {
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(unavailable)?
        }
    }
}

impl Drop for EmbeddedStorage {
    /// Lets the writer finish its queue, so the file is closed when this returns.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl Storage for EmbeddedStorage {
    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        Ok(self.submit(Op::Create(key.into(), value)).await?.0)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let kv = txn.open_table(KV).map_err(unavailable)?;
            let found = kv.get(key.as_bytes()).map_err(unavailable)?;
            Ok(found.map(|v| decode_kv(&key, v.value())))
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        Ok(self
            .submit(Op::Update(key.into(), value, expected))
            .await?
            .0)
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        let (rev, prev) = self.submit(Op::Delete(key.into(), expected)).await?;
        Ok((rev, prev.ok_or_else(|| StorageError::NotFound(key.into()))?))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<ListResult> {
        let (prefix, start_after) = (prefix.to_string(), start_after.map(String::from));
        self.blocking(move |db| list_at(db, &prefix, start_after.as_deref(), limit, revision))
            .await
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.revision.lock().map_err(unavailable)?.0)
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        // Subscribe before reading history so nothing committed in between is missed.
        let mut live = self.events.subscribe();
        let (current, compacted) = *self.revision.lock().map_err(unavailable)?;
        if after < compacted {
            return Err(StorageError::Compacted {
                requested: after,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(1024);
        let db = self.db.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut sent = after;
            let replay = |db: Arc<Database>, prefix: String, from: i64, to: i64| {
                tokio::task::spawn_blocking(move || read_log(&db, &prefix, from, to))
            };
            match replay(db.clone(), prefix.clone(), sent, current).await {
                Ok(Ok(events)) => {
                    for ev in events {
                        sent = ev.kv.mod_revision;
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    sent = sent.max(current);
                }
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(_) => return,
            }
            loop {
                match live.recv().await {
                    Ok(batch) => {
                        let before = sent;
                        for ev in batch.iter() {
                            if ev.kv.mod_revision > sent && ev.kv.key.starts_with(&prefix) {
                                sent = ev.kv.mod_revision;
                                if tx.send(Ok(ev.clone())).await.is_err() {
                                    return;
                                }
                            }
                        }
                        if let Some(last) = batch.last() {
                            if sent == before && last.kv.mod_revision > sent {
                                let progress = WatchEvent {
                                    kind: EventKind::Progress,
                                    kv: KeyValue {
                                        key: String::new(),
                                        value: Bytes::new(),
                                        create_revision: 0,
                                        mod_revision: last.kv.mod_revision,
                                    },
                                    prev: None,
                                };
                                if tx.send(Ok(progress)).await.is_err() {
                                    return;
                                }
                            }
                            sent = sent.max(last.kv.mod_revision);
                        }
                    }
                    // A slow watcher fell behind the broadcast: catch up from the log.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match replay(db.clone(), prefix.clone(), sent, i64::MAX).await {
                            Ok(Ok(events)) => {
                                for ev in events {
                                    sent = ev.kv.mod_revision;
                                    if tx.send(Ok(ev)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Ok(Err(e)) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        loop {
            self.submit(Op::Compact(revision)).await?;
            let (current, compacted) = *self.revision.lock().map_err(unavailable)?;
            if compacted >= revision.min(current) {
                return Ok(());
            }
        }
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.revision.lock().map_err(unavailable)?.1)
    }
}

struct Writer {
    db: Arc<Database>,
    events: broadcast::Sender<Arc<Vec<WatchEvent>>>,
    revision: Arc<Mutex<(i64, i64)>>,
}

/// What a write answers: its revision and the value it replaced.
type Outcome = Result<(i64, Option<KeyValue>)>;
type Reply = oneshot::Sender<Outcome>;

impl Writer {
    fn run(self, queue: std::sync::mpsc::Receiver<Request>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn commit(&self, batch: Vec<Request>) {
        let mut replies: Vec<(Reply, Outcome)> = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let outcome = (|| -> std::result::Result<(i64, i64), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            let (mut rev, mut compacted) = *self.revision.lock().expect("revision lock");
            {
                let mut kv = txn.open_table(KV)?;
                let mut log = txn.open_table(LOG)?;
                for Request { op, reply } in batch {
                    let result =
                        apply(&mut kv, &mut log, &mut rev, &mut compacted, op, &mut events)?;
                    replies.push((reply, result));
                }
                let mut meta = txn.open_table(META)?;
                meta.insert("revision", rev as u64)?;
                meta.insert("compacted", compacted as u64)?;
            }
            txn.commit()?;
            Ok((rev, compacted))
        })();
        match outcome {
            Ok(state) => {
                *self.revision.lock().expect("revision lock") = state;
                if !events.is_empty() {
                    let _ = self.events.send(Arc::new(events));
                }
                for (reply, result) in replies {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store commit failed");
                for (reply, _) in replies {
                    let _ = reply.send(Err(unavailable(&e)));
                }
            }
        }
    }
}

fn apply(
    kv: &mut redb::Table<&[u8], &[u8]>,
    log: &mut redb::Table<u64, &[u8]>,
    rev: &mut i64,
    compacted: &mut i64,
    op: Op,
    events: &mut Vec<WatchEvent>,
) -> std::result::Result<Result<(i64, Option<KeyValue>)>, redb::Error> {
    let current = |kv: &redb::Table<&[u8], &[u8]>,
                   key: &str|
     -> std::result::Result<Option<KeyValue>, redb::Error> {
        Ok(kv.get(key.as_bytes())?.map(|v| decode_kv(key, v.value())))
    };
    let (key, value, expected, kind) = match op {
        Op::Compact(target) => {
            let target = target.min(*rev);
            if target > *compacted {
                // Drop log entries at or below the target revision, a bounded
                // number per commit so writers queued behind are not held up;
                // `compact` asks again until the target is reached.
                let old: Vec<u64> = log
                    .range(..=(target as u64))?
                    .take(COMPACT_CHUNK)
                    .filter_map(|e| e.ok().map(|(k, _)| k.value()))
                    .collect();
                let done = old.len() < COMPACT_CHUNK;
                let reached = old.last().copied();
                for r in old {
                    log.remove(r)?;
                }
                *compacted = match (done, reached) {
                    (false, Some(r)) => (r as i64).max(*compacted),
                    _ => target,
                };
            }
            return Ok(Ok((*rev, None)));
        }
        Op::Create(k, v) => (k, Some(v), None, 0),
        Op::Update(k, v, e) => (k, Some(v), Some(e), 1),
        Op::Delete(k, e) => (k, None, e, 2),
    };
    let prev = current(kv, &key)?;
    match (kind, &prev) {
        (0, Some(_)) => return Ok(Err(StorageError::AlreadyExists(key))),
        (1 | 2, None) => return Ok(Err(StorageError::NotFound(key))),
        _ => {}
    }
    if let (Some(expected), Some(p)) = (expected, &prev) {
        if p.mod_revision != expected {
            return Ok(Err(StorageError::Conflict {
                key,
                expected,
                actual: p.mod_revision,
            }));
        }
    }
    *rev += 1;
    let event = match value {
        Some(value) => {
            let create_revision = prev.as_ref().map_or(*rev, |p| p.create_revision);
            let new = KeyValue {
                key: key.clone(),
                value,
                create_revision,
                mod_revision: *rev,
            };
            kv.insert(key.as_bytes(), encode_kv(&new).as_slice())?;
            WatchEvent {
                kind: EventKind::Put,
                kv: new,
                prev: prev.clone(),
            }
        }
        None => {
            kv.remove(key.as_bytes())?;
            let old = prev.clone().expect("checked above");
            let gone = KeyValue {
                mod_revision: *rev,
                ..old
            };
            WatchEvent {
                kind: EventKind::Delete,
                kv: gone,
                prev: prev.clone(),
            }
        }
    };
    log.insert(*rev as u64, encode_event(&event).as_slice())?;
    events.push(event);
    Ok(Ok((*rev, prev)))
}

fn list_at(
    db: &Database,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: i64,
) -> Result<ListResult> {
    let txn = db.begin_read().map_err(unavailable)?;
    let meta = txn.open_table(META).map_err(unavailable)?;
    let get = |k| meta.get(k).ok().flatten().map(|v| v.value()).unwrap_or(0) as i64;
    let (current, compacted) = (get("revision").max(1), get("compacted"));
    let at = if revision == 0 { current } else { revision };
    if at > current {
        return Err(StorageError::FutureRevision(at));
    }
    if at < compacted {
        return Err(StorageError::Compacted {
            requested: at,
            compacted,
        });
    }
    let end = prefix_end(prefix);
    let lower: Vec<u8> =
        start_after.map_or_else(|| prefix.as_bytes().to_vec(), |s| s.as_bytes().to_vec());
    let lower_bound = if start_after.is_some() {
        Bound::Excluded(lower.as_slice())
    } else {
        Bound::Included(lower.as_slice())
    };
    let kv = txn.open_table(KV).map_err(unavailable)?;
    let range = kv
        .range::<&[u8]>((lower_bound, Bound::Excluded(end.as_slice())))
        .map_err(unavailable)?;

    // State at `at` differs from now only for keys written after `at`: their
    // first later log entry holds the value they had at `at`.
    let mut past: HashMap<String, Option<KeyValue>> = HashMap::new();
    if at < current {
        let log = txn.open_table(LOG).map_err(unavailable)?;
        for entry in log.range((at as u64 + 1)..).map_err(unavailable)? {
            let (_, v) = entry.map_err(unavailable)?;
            let ev = decode_event(v.value());
            if ev.kv.key.starts_with(prefix) && !past.contains_key(&ev.kv.key) {
                past.insert(ev.kv.key.clone(), ev.prev);
            }
        }
    }
    let mut items: Vec<KeyValue> = Vec::new();
    for entry in range {
        let (k, v) = entry.map_err(unavailable)?;
        let key = String::from_utf8_lossy(k.value()).into_owned();
        if past.contains_key(&key) {
            continue;
        }
        items.push(decode_kv(&key, v.value()));
    }
    if !past.is_empty() {
        let after = start_after.unwrap_or("");
        items.extend(
            past.into_values()
                .flatten()
                .filter(|p| start_after.is_none() || p.key.as_str() > after),
        );
        items.sort_by(|a, b| a.key.cmp(&b.key));
    }
    let more = limit > 0 && items.len() > limit;
    if more {
        items.truncate(limit);
    }
    Ok(ListResult {
        items,
        revision: at,
        more,
    })
}

fn read_log(db: &Database, prefix: &str, after: i64, to: i64) -> Result<Vec<WatchEvent>> {
    let txn = db.begin_read().map_err(unavailable)?;
    let log = txn.open_table(LOG).map_err(unavailable)?;
    let mut out = Vec::new();
    let upper = to.max(after) as u64;
    for entry in log.range((after as u64 + 1)..=upper).map_err(unavailable)? {
        let (_, v) = entry.map_err(unavailable)?;
        let ev = decode_event(v.value());
        if ev.kv.key.starts_with(prefix) {
            out.push(ev);
        }
    }
    Ok(out)
}

// --- encoding: little-endian integers, length-prefixed byte strings ---

fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_kv(key: &str, raw: &[u8]) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        create_revision: i64::from_le_bytes(raw[0..8].try_into().expect("8 bytes")),
        mod_revision: i64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")),
        value: Bytes::copy_from_slice(&raw[16..]),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn take_bytes<'a>(raw: &mut &'a [u8]) -> &'a [u8] {
    let len = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes")) as usize;
    let (b, rest) = raw[4..].split_at(len);
    *raw = rest;
    b
}

fn encode_event(ev: &WatchEvent) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(matches!(ev.kind, EventKind::Delete) as u8);
    put_bytes(&mut out, ev.kv.key.as_bytes());
    put_bytes(&mut out, &encode_kv(&ev.kv));
    match &ev.prev {
        Some(p) => {
            out.push(1);
            put_bytes(&mut out, &encode_kv(p));
        }
        None => out.push(0),
    }
    out
}

fn decode_event(mut raw: &[u8]) -> WatchEvent {
    let kind = if raw[0] == 1 {
        EventKind::Delete
    } else {
        EventKind::Put
    };
    raw = &raw[1..];
    let key = String::from_utf8_lossy(take_bytes(&mut raw)).into_owned();
    let kv = decode_kv(&key, take_bytes(&mut raw));
    let has_prev = raw[0] == 1;
    raw = &raw[1..];
    let prev = has_prev.then(|| decode_kv(&key, take_bytes(&mut raw)));
    WatchEvent { kind, kv, prev }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStorage::open(&dir.path().join("state.redb")).unwrap();
        crate::storage::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn compaction_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStorage::open(&dir.path().join("state.redb")).unwrap();
        // Concurrent creates share commits, so this stays quick.
        let creates = (0..(COMPACT_CHUNK + 500)).map(|i| {
            let store = &store;
            async move {
                store
                    .create(&format!("/registry/c/{i}"), Bytes::from_static(b"x"))
                    .await
                    .unwrap()
            }
        });
        let rev = futures::future::join_all(creates)
            .await
            .into_iter()
            .max()
            .unwrap();
        store.compact(rev).await.unwrap();
        assert_eq!(store.compacted_revision().await.unwrap(), rev);
        assert!(matches!(
            store.watch("/registry/c/", rev - 1).await,
            Err(StorageError::Compacted { .. })
        ));
        assert_eq!(
            store
                .list("/registry/c/", None, 0, 0)
                .await
                .unwrap()
                .items
                .len(),
            COMPACT_CHUNK + 500
        );
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let rev = {
            let store = EmbeddedStorage::open(&path).unwrap();
            store
                .create("/registry/a/x", Bytes::from_static(b"1"))
                .await
                .unwrap()
        };
        let store = EmbeddedStorage::open(&path).unwrap();
        let got = store.get("/registry/a/x").await.unwrap().unwrap();
        assert_eq!(got.mod_revision, rev);
        assert_eq!(store.current_revision().await.unwrap(), rev);
    }
}
