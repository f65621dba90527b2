//! The storage conformance suite: every backend must pass it unchanged.

use super::*;
use std::time::Duration;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next change event, skipping progress notifications.
async fn next(w: &mut WatchStream) -> WatchEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), w.recv())
            .await
            .expect("watch event within 10s")
            .expect("watch open")
            .expect("watch event ok");
        if ev.kind != EventKind::Progress {
            return ev;
        }
    }
}

/// Runs every check against a fresh, empty store. Keys live under a unique prefix
/// so a shared backend (etcd) can run it repeatedly.
pub async fn run_all(store: &dyn Storage) {
    let p = format!("/registry/conformance-{}/", uuid::Uuid::new_v4().simple());
    create_get_update_delete(store, &p).await;
    list_paging_and_revisions(store, &p).await;
    watch_history_and_live(store, &p).await;
    compaction(store, &p).await;
}

async fn create_get_update_delete(store: &dyn Storage, p: &str) {
    let k = format!("{p}crud/a");
    let r1 = store.create(&k, b("one")).await.unwrap();
    assert!(r1 > 0);
    assert_eq!(
        store.create(&k, b("again")).await,
        Err(StorageError::AlreadyExists(k.clone()))
    );
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_ref(), got.create_revision, got.mod_revision),
        (b"one".as_ref(), r1, r1)
    );

    let r2 = store.update(&k, b("two"), r1).await.unwrap();
    assert!(r2 > r1);
    // A stale revision is a conflict and changes nothing.
    assert!(matches!(
        store.update(&k, b("three"), r1).await,
        Err(StorageError::Conflict { .. })
    ));
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_ref(), got.create_revision, got.mod_revision),
        (b"two".as_ref(), r1, r2)
    );
    assert!(matches!(
        store.update(&format!("{p}crud/none"), b("x"), 1).await,
        Err(StorageError::NotFound(_))
    ));

    assert!(matches!(
        store.delete(&k, Some(r1)).await,
        Err(StorageError::Conflict { .. })
    ));
    let (r3, old) = store.delete(&k, Some(r2)).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(old.value.as_ref(), b"two");
    assert_eq!(store.get(&k).await.unwrap(), None);
    assert!(matches!(
        store.delete(&k, None).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(store.current_revision().await.unwrap() >= r3);
}

async fn list_paging_and_revisions(store: &dyn Storage, p: &str) {
    let lp = format!("{p}list/");
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(
            store
                .create(&format!("{lp}k{i}"), b(&format!("v{i}")))
                .await
                .unwrap(),
        );
    }
    // A sibling prefix must not leak into the list.
    store
        .create(&format!("{p}listx"), b("other"))
        .await
        .unwrap();
    let all = store.list(&lp, None, 0, 0).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert!(!all.more);
    let page1 = store.list(&lp, None, 2, 0).await.unwrap();
    assert_eq!(
        page1
            .items
            .iter()
            .map(|kv| kv.key.clone())
            .collect::<Vec<_>>(),
        vec![format!("{lp}k0"), format!("{lp}k1")]
    );
    assert!(page1.more);
    // The next page reads at the first page's revision, so a later write is invisible.
    let at = page1.revision;
    store
        .update(&format!("{lp}k3"), b("changed"), revs[3])
        .await
        .unwrap();
    store.create(&format!("{lp}k9"), b("late")).await.unwrap();
    store.delete(&format!("{lp}k4"), None).await.unwrap();
    let page2 = store
        .list(&lp, Some(&page1.items[1].key), 10, at)
        .await
        .unwrap();
    let got: Vec<(String, String)> = page2
        .items
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (format!("{lp}k2"), "v2".to_string()),
            (format!("{lp}k3"), "v3".to_string()),
            (format!("{lp}k4"), "v4".to_string())
        ]
    );
    assert_eq!(page2.revision, at);
    assert!(!page2.more);
    let now = store.list(&lp, None, 0, 0).await.unwrap();
    assert_eq!(now.items.len(), 5);
    assert!(now.items.iter().any(|kv| kv.value.as_ref() == b"changed"));
    let future = store.current_revision().await.unwrap() + 100;
    assert!(matches!(
        store.list(&lp, None, 0, future).await,
        Err(StorageError::FutureRevision(_))
    ));
}

async fn watch_history_and_live(store: &dyn Storage, p: &str) {
    let wp = format!("{p}watch/");
    let start = store.current_revision().await.unwrap();
    let r1 = store.create(&format!("{wp}a"), b("1")).await.unwrap();
    store.create(&format!("{p}watchnot"), b("x")).await.unwrap();
    let mut w = store.watch(&wp, start).await.unwrap();
    // History first.
    let e = next(&mut w).await;
    assert_eq!(
        (e.kind.clone(), e.kv.key.clone(), e.kv.mod_revision),
        (EventKind::Put, format!("{wp}a"), r1)
    );
    assert_eq!(e.prev, None);
    // Then live events, in order, with the previous value.
    let r2 = store.update(&format!("{wp}a"), b("2"), r1).await.unwrap();
    let (r3, _) = store.delete(&format!("{wp}a"), None).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(
        (
            e.kind.clone(),
            e.kv.mod_revision,
            e.prev.as_ref().map(|p| p.value.clone())
        ),
        (EventKind::Put, r2, Some(b("1")))
    );
    let e = next(&mut w).await;
    assert_eq!(
        (e.kind.clone(), e.kv.mod_revision, e.kv.value.clone()),
        (EventKind::Delete, r3, b("2"))
    );
    // A watch from the newest revision sees only later events.
    let mut w2 = store.watch(&wp, r3).await.unwrap();
    let r4 = store.create(&format!("{wp}b"), b("b")).await.unwrap();
    assert_eq!(next(&mut w2).await.kv.mod_revision, r4);
}

async fn compaction(store: &dyn Storage, p: &str) {
    let k = format!("{p}compact/a");
    let r1 = store.create(&k, b("1")).await.unwrap();
    let r2 = store.update(&k, b("2"), r1).await.unwrap();
    store.compact(r2).await.unwrap();
    assert!(store.compacted_revision().await.unwrap() >= r2);
    assert!(matches!(
        store.watch(&k, r1 - 1).await,
        Err(StorageError::Compacted { .. })
    ));
    assert!(matches!(
        store.list(&k, None, 0, r1).await,
        Err(StorageError::Compacted { .. })
    ));
    // The newest value is still there after compaction.
    assert_eq!(store.get(&k).await.unwrap().unwrap().value, b("2"));
    let mut w = store.watch(&k, r2).await.unwrap();
    let r3 = store.update(&k, b("3"), r2).await.unwrap();
    assert_eq!(next(&mut w).await.kv.mod_revision, r3);
}
