//! The etcd v3 backend: every operation maps onto one etcd request; compare-
//! and-swap is a transaction on the key's mod_revision, as upstream's etcd3 store.

use super::*;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use std::sync::atomic::{AtomicI64, Ordering};

pub struct EtcdStorage {
    client: Client,
    /// The newest compaction this server made or saw (etcd does not report it otherwise).
    compacted: AtomicI64,
}

fn map_err(e: etcd_client::Error) -> StorageError {
    let msg = e.to_string();
    if msg.contains("required revision has been compacted") {
        StorageError::Compacted {
            requested: 0,
            compacted: 0,
        }
    } else if msg.contains("future revision") {
        StorageError::FutureRevision(0)
    } else {
        StorageError::Unavailable(msg)
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

impl EtcdStorage {
    /// Connects to etcd at one or more comma-separated endpoints (`http://127.0.0.1:2379`).
    pub async fn connect(endpoints: &str) -> Result<Self> {
        let endpoints: Vec<&str> = endpoints.split(',').map(str::trim).collect();
        let client = Client::connect(endpoints, None).await.map_err(map_err)?;
        let store = Self {
            client,
            compacted: AtomicI64::new(0),
        };
        // Fail at start, not at the first request, when etcd is not there.
        store.current_revision().await?;
        Ok(store)
    }

    /// On a failed compare, what the key looks like now decides the error.
    fn failed(&self, key: &str, expected: i64, responses: Vec<TxnOpResponse>) -> StorageError {
        let current = responses.into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(to_kv),
            _ => None,
        });
        match current {
            None => StorageError::NotFound(key.into()),
            Some(kv) => StorageError::Conflict {
                key: key.into(),
                expected,
                actual: kv.mod_revision,
            },
        }
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).unwrap_or(0)
}

#[async_trait]
impl Storage for EtcdStorage {
    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(map_err)?;
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists(key.into()));
        }
        Ok(header_revision(resp.header()))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(map_err)?;
        Ok(resp.kvs().first().map(to_kv))
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(map_err)?;
        if !resp.succeeded() {
            return Err(self.failed(key, expected, resp.op_responses()));
        }
        Ok(header_revision(resp.header()))
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(i64, KeyValue)> {
        let cmp = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(map_err)?;
        let rev = header_revision(resp.header());
        if !resp.succeeded() {
            return Err(self.failed(key, expected.unwrap_or(0), resp.op_responses()));
        }
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().map(to_kv),
            _ => None,
        });
        prev.map(|p| (rev, p))
            .ok_or_else(|| StorageError::NotFound(key.into()))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: i64,
    ) -> Result<ListResult> {
        let start = match start_after {
            // The smallest key after `start_after`.
            Some(after) => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            None => prefix.as_bytes().to_vec(),
        };
        let mut opts = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_revision(revision);
        if limit > 0 {
            opts = opts.with_limit(limit as i64);
        }
        let resp = self
            .client
            .kv_client()
            .get(start, Some(opts))
            .await
            .map_err(|e| {
                let err = map_err(e);
                match err {
                    StorageError::Compacted { .. } => StorageError::Compacted {
                        requested: revision,
                        compacted: self.compacted.load(Ordering::Relaxed),
                    },
                    StorageError::FutureRevision(_) => StorageError::FutureRevision(revision),
                    other => other,
                }
            })?;
        let read_at = if revision > 0 {
            revision
        } else {
            header_revision(resp.header())
        };
        Ok(ListResult {
            items: resp.kvs().iter().map(to_kv).collect(),
            revision: read_at,
            more: resp.more(),
        })
    }

    async fn current_revision(&self) -> Result<i64> {
        // A get of a key that never exists is etcd's cheapest way to read the header.
        let resp = self
            .client
            .kv_client()
            .get(
                "/registry/\0revision-probe",
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(map_err)?;
        Ok(header_revision(resp.header()))
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        let opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(after + 1)
            .with_prev_key()
            .with_progress_notify();
        // etcd reports a compacted start revision only later, inside the stream;
        // a read at that revision tells at once, as the caller needs.
        let probe = GetOptions::new().with_revision(after + 1).with_count_only();
        match self
            .client
            .kv_client()
            .get(prefix, Some(probe))
            .await
            .map_err(map_err)
        {
            Err(StorageError::Compacted { .. }) => {
                return Err(StorageError::Compacted {
                    requested: after,
                    compacted: self.compacted.load(Ordering::Relaxed),
                })
            }
            Err(StorageError::Unavailable(e)) => return Err(StorageError::Unavailable(e)),
            _ => {}
        }
        let mut stream = self
            .client
            .watch_client()
            .watch(prefix, Some(opts))
            .await
            .map_err(map_err)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let msg = match stream.message().await {
                    Ok(Some(msg)) => msg,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(map_err(e))).await;
                        return;
                    }
                };
                if msg.canceled() {
                    let err = if msg.compact_revision() > 0 {
                        StorageError::Compacted {
                            requested: after,
                            compacted: msg.compact_revision(),
                        }
                    } else {
                        StorageError::Unavailable(format!(
                            "watch canceled: {}",
                            msg.cancel_reason()
                        ))
                    };
                    let _ = tx.send(Err(err)).await;
                    return;
                }
                if msg.events().is_empty() {
                    let rev = header_revision(msg.header());
                    if rev > 0 {
                        let kv = KeyValue {
                            key: String::new(),
                            value: Bytes::new(),
                            create_revision: 0,
                            mod_revision: rev,
                        };
                        if tx
                            .send(Ok(WatchEvent {
                                kind: EventKind::Progress,
                                kv,
                                prev: None,
                            }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    continue;
                }
                for ev in msg.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let prev = ev.prev_kv().map(to_kv);
                    let event = match ev.event_type() {
                        EventType::Put => WatchEvent {
                            kind: EventKind::Put,
                            kv: to_kv(kv),
                            prev,
                        },
                        EventType::Delete => {
                            // etcd's delete event carries only the key; the value is the previous one.
                            let mut gone = prev.clone().unwrap_or_else(|| to_kv(kv));
                            gone.mod_revision = kv.mod_revision();
                            WatchEvent {
                                kind: EventKind::Delete,
                                kv: gone,
                                prev,
                            }
                        }
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        match self.client.kv_client().compact(revision, None).await {
            Ok(_) => {}
            // Compacting to an already compacted revision is not an error for us.
            Err(e) if e.to_string().contains("compacted") => {}
            Err(e) => return Err(map_err(e)),
        }
        self.compacted.fetch_max(revision, Ordering::Relaxed);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.compacted.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the conformance suite against a real etcd when one is given
    /// (`SKIFF_TEST_ETCD=http://127.0.0.1:2379`; `.ci/run` starts one).
    #[tokio::test]
    async fn conformance() {
        let Ok(endpoint) = std::env::var("SKIFF_TEST_ETCD") else {
            eprintln!("SKIFF_TEST_ETCD not set: etcd conformance skipped");
            return;
        };
        let store = EtcdStorage::connect(&endpoint)
            .await
            .expect("connect to etcd");
        crate::storage::conformance::run_all(&store).await;
    }
}
