//! The object store behind the API server: a key/value store with a global
//! revision per write, compare-and-swap on an object's modification revision,
//! lists at a revision with paging, watches from a revision, and compaction.
//! Two backends pass one conformance suite: `embedded` (redb) and `etcd`.

#[cfg(test)]
pub mod conformance;
pub mod embedded;
pub mod etcd;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// One stored object with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
    /// Nothing under the prefix changed up to `kv.mod_revision`: lets caches
    /// know they are current without an event of their own.
    Progress,
}

/// A committed change. For a delete, `kv` holds the deleted value and
/// `kv.mod_revision` is the revision of the delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The value before this change, if there was one.
    pub prev: Option<KeyValue>,
}

#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: i64,
    /// More keys follow the last returned one.
    pub more: bool,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("revision conflict on {key}: expected {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    #[error("required revision {requested} has been compacted (oldest available {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("revision {0} is in the future")]
    FutureRevision(i64),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// A stream of events of a watch, in revision order. Ends with an error (e.g.
/// `Compacted`) or when the store shuts down.
pub type WatchStream = mpsc::Receiver<Result<WatchEvent>>;

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates `key`; fails with `AlreadyExists`. Returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<i64>;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Replaces `key` if its modification revision is `expected`.
    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64>;

    /// Deletes `key` (if `expected` is given, only at that modification revision).
    /// Returns the delete's revision and the deleted value.
    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)>;

    /// Keys under `prefix` greater than `start_after` (if given), in key order, at
    /// `revision` (0 = current), at most `limit` (0 = all).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<ListResult>;

    /// The newest committed revision.
    async fn current_revision(&self) -> Result<i64>;

    /// Events under `prefix` with revision greater than `after`.
    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream>;

    /// Forgets history at and below `revision`.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The oldest revision that can still be read or watched from.
    async fn compacted_revision(&self) -> Result<i64>;
}

/// The smallest key greater than every key with this prefix (etcd's range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
