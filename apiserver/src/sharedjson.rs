//! An object's JSON text as the watch cache keeps it, with the parts it has
//! in common with other objects held once. Pods of one template repeat most
//! of their text — the managedFields of the controller that made them, the
//! containers, the tolerations, conditions set in the same second — and at
//! 30,000 pods that repetition is tens of megabytes.
//!
//! Every value of at least `MIN_PIECE` bytes of text that holds no such
//! value itself (the smallest large subtrees) is cut out into a piece kept
//! in a process-wide table, and an equal piece of another object is the
//! same allocation. The rest of the text stays one buffer of the object's
//! own. Written out, the text is exactly what `serde_json::to_vec` gives.

use bytes::{BufMut, Bytes};
use serde_json::Value;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

/// The smallest value worth sharing: below it the table entry and the
/// reference cost more than the text they save.
const MIN_PIECE: usize = 128;
/// Pieces held before the first sweep of those no object holds any more.
const FIRST_SWEEP: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct SharedJson {
    /// The text that is the object's alone.
    own: Bytes,
    /// The shared pieces, each with where in `own` it goes.
    pieces: Box<[(u32, Arc<[u8]>)]>,
}

impl SharedJson {
    pub fn encode(value: &Value) -> SharedJson {
        let mut text = Vec::with_capacity(1024);
        let mut cuts = Vec::new();
        write(value, &mut text, &mut cuts, true);
        if cuts.is_empty() || u32::try_from(text.len()).is_err() {
            return SharedJson {
                own: Bytes::from(text.into_boxed_slice()),
                pieces: Box::default(),
            };
        }
        let cut_len: usize = cuts.iter().map(|r| r.len()).sum();
        let mut own = Vec::with_capacity(text.len() - cut_len);
        let mut pieces = Vec::with_capacity(cuts.len());
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        let mut at = 0;
        for cut in cuts {
            own.extend_from_slice(&text[at..cut.start]);
            pieces.push((own.len() as u32, table.share(&text[cut.clone()])));
            at = cut.end;
        }
        own.extend_from_slice(&text[at..]);
        SharedJson {
            own: Bytes::from(own),
            pieces: pieces.into(),
        }
    }

    /// The length of the whole text.
    pub fn len(&self) -> usize {
        self.own.len() + self.pieces.iter().map(|(_, p)| p.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each stretch of the text, in order.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) {
        let mut at = 0;
        for (offset, piece) in self.pieces.iter() {
            let offset = *offset as usize;
            if offset > at {
                f(&self.own[at..offset]);
            }
            f(piece);
            at = offset;
        }
        if at < self.own.len() {
            f(&self.own[at..]);
        }
    }

    pub fn write_to(&self, out: &mut impl BufMut) {
        self.for_each_chunk(|c| out.put_slice(c));
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each_chunk(|c| out.extend_from_slice(c));
        out
    }

    /// Roughly the memory this text holds: its own bytes and references,
    /// and of each piece its share among the objects holding it.
    pub fn held_bytes(&self) -> usize {
        let pieces: usize = self
            .pieces
            .iter()
            .map(|(_, p)| {
                // One holder is the table.
                let holders = Arc::strong_count(p).saturating_sub(1).max(1);
                std::mem::size_of::<(u32, Arc<[u8]>)>() + p.len() / holders
            })
            .sum();
        self.own.len() + pieces
    }
}

/// Writes `value` as serde_json would, noting in `cuts` the ranges of the
/// smallest values of at least `MIN_PIECE` bytes (never the whole object).
/// Returns whether `value` is or holds such a range.
fn write(value: &Value, out: &mut Vec<u8>, cuts: &mut Vec<Range<usize>>, root: bool) -> bool {
    let start = out.len();
    let mut holds = false;
    match value {
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(key, out);
                out.push(b':');
                holds |= write(v, out, cuts, false);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                holds |= write(v, out, cuts, false);
            }
            out.push(b']');
        }
        scalar_value => scalar(scalar_value, out),
    }
    if holds {
        return true;
    }
    if !root && out.len() - start >= MIN_PIECE {
        cuts.push(start..out.len());
        return true;
    }
    false
}

fn scalar(value: &impl serde::Serialize, out: &mut Vec<u8>) {
    // Writing a string or a number into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// The pieces in use, by their text.
struct Table {
    pieces: HashSet<Arc<[u8]>>,
    /// Their text, in bytes.
    bytes: usize,
    sweep_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| Mutex::new(Table::new()));

/// How many pieces the table holds and their bytes (`/metrics`), those no
/// object holds any more included until the next sweep.
pub fn held() -> (usize, usize) {
    let table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    (table.pieces.len(), table.bytes)
}

impl Table {
    fn new() -> Table {
        Table {
            pieces: HashSet::new(),
            bytes: 0,
            sweep_at: FIRST_SWEEP,
        }
    }

    fn share(&mut self, text: &[u8]) -> Arc<[u8]> {
        if let Some(held) = self.pieces.get(text) {
            return held.clone();
        }
        if self.pieces.len() >= self.sweep_at {
            // Forget pieces only the table holds. Sweeping again once a
            // quarter more are held keeps the work per piece constant (five
            // entries visited per insert) and what the dead ones hold below
            // a quarter of what the live ones do.
            let bytes = &mut self.bytes;
            self.pieces.retain(|p| {
                let held = Arc::strong_count(p) > 1;
                if !held {
                    *bytes -= p.len();
                }
                held
            });
            self.sweep_at = (self.pieces.len() + self.pieces.len() / 4).max(FIRST_SWEEP);
        }
        let piece: Arc<[u8]> = text.into();
        self.bytes += piece.len();
        self.pieces.insert(piece.clone());
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                "annotations": {"note": "a \"quoted\" \u{e9} value\n"}},
            "spec": {
                "containers": [{"name": "web", "image": "registry.example/web:1.0",
                    "command": ["sleep", "3600"], "resources": {}, "terminationMessagePath": "/dev/termination-log"}],
                "nodeName": "node-1",
                "priority": 0,
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ]
            },
            "status": {"podIP": ip, "ratio": 0.5, "ready": true, "gone": null}
        })
    }

    #[test]
    fn writes_exactly_what_serde_json_writes() {
        for value in [
            pod("a", "10.0.0.1"),
            json!({}),
            json!([]),
            json!("x".repeat(500)),
            json!({"big": "y".repeat(500), "n": [1, 2.5, -3, {"k": []}]}),
        ] {
            let shared = SharedJson::encode(&value);
            assert_eq!(shared.to_vec(), serde_json::to_vec(&value).unwrap());
            assert_eq!(shared.len(), shared.to_vec().len());
            let mut b = bytes::BytesMut::new();
            shared.write_to(&mut b);
            assert_eq!(&b[..], &shared.to_vec()[..]);
        }
    }

    #[test]
    fn objects_of_one_template_share_their_large_parts() {
        let (a, b) = (
            SharedJson::encode(&pod("a", "10.0.0.1")),
            SharedJson::encode(&pod("b", "10.0.0.2")),
        );
        assert!(!a.pieces.is_empty());
        assert_eq!(a.pieces.len(), b.pieces.len());
        for ((_, pa), (_, pb)) in a.pieces.iter().zip(b.pieces.iter()) {
            assert!(Arc::ptr_eq(pa, pb), "equal pieces are one allocation");
        }
        assert!(a.own.len() < a.len() / 2, "most of a pod's text is shared");
        assert!(a.held_bytes() < a.len());
    }

    #[test]
    fn small_objects_are_kept_whole() {
        let small = json!({"metadata": {"name": "x"}, "data": {"k": "v"}});
        let shared = SharedJson::encode(&small);
        assert!(shared.pieces.is_empty());
        // The whole object is never a piece, however large.
        let leaf = json!("z".repeat(1000));
        assert!(SharedJson::encode(&leaf).pieces.is_empty());
    }

    #[test]
    fn pieces_no_object_holds_are_swept() {
        let mut table = Table {
            sweep_at: 2,
            ..Table::new()
        };
        let kept = table.share(b"kept");
        drop(table.share(b"dropped"));
        assert_eq!(table.bytes, 11);
        let new = table.share(b"new");
        assert!(table.pieces.contains(&b"kept"[..]));
        assert!(!table.pieces.contains(&b"dropped"[..]));
        assert_eq!(table.bytes, 7);
        drop((kept, new));
    }
}
