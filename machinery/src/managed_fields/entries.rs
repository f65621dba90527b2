//! `metadata.managedFields` entries: decoding them into field sets, and
//! encoding them back in upstream's order and shape. An entry is one manager
//! in one role, identified as upstream identifies it: by manager name,
//! operation, subresource and — for updates only — apiVersion, so an applier
//! keeps one entry whatever version it applies.

use super::fieldsv1;
use super::set::Set;
use serde_json::{json, Map, Value};

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub set: Set,
}

impl Entry {
    pub fn new(manager: &str, operation: &str, api_version: &str, subresource: &str) -> Entry {
        Entry {
            manager: if manager.is_empty() {
                "unknown"
            } else {
                manager
            }
            .to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: None,
            set: Set::new(),
        }
    }

    pub fn applied(&self) -> bool {
        self.operation == APPLY
    }

    pub fn same_manager(&self, other: &Entry) -> bool {
        self.id() == other.id()
    }

    /// Upstream's identifier: the entry's JSON without time, fields and,
    /// for appliers, apiVersion. Sorting managers sorts these strings.
    pub fn id(&self) -> String {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        if !self.applied() {
            m.insert("apiVersion".into(), json!(self.api_version));
        }
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m).to_string()
    }

    /// How conflict messages name the manager: `"kubectl"`, or for an
    /// updater `"kubectl-edit" using apps/v1` (with its subresource, if any).
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if !self.applied() {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// The entries of `metadata.managedFields` (absent or null: none).
pub fn decode(v: Option<&Value>) -> Result<Vec<Entry>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("managedFields must be a list".into()),
    };
    let mut out: Vec<Entry> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("");
        let operation = s("operation");
        if operation != APPLY && operation != UPDATE {
            return Err("operation must be `Apply` or `Update`".into());
        }
        if s("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match s("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ))
            }
        }
        let set = match item.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(f) => fieldsv1::from_json(f).map_err(|e| format!("error decoding set: {e}"))?,
        };
        let entry = Entry {
            manager: s("manager").to_string(),
            operation: operation.to_string(),
            api_version: s("apiVersion").to_string(),
            subresource: s("subresource").to_string(),
            time: item.get("time").and_then(Value::as_str).map(String::from),
            set,
        };
        // A manager listed twice: the later entry wins, as upstream's map does.
        out.retain(|e| !e.same_manager(&entry));
        out.push(entry);
    }
    Ok(out)
}

/// A time's seconds, for ordering (`2026-01-02T03:04:05Z` and longer forms).
fn seconds(time: &Option<String>) -> &str {
    time.as_deref().map_or("", |t| t.get(..19).unwrap_or(t))
}

/// Entries as `metadata.managedFields` holds them: appliers first, then by
/// time, manager, apiVersion and subresource; `None` when there are none.
pub fn encode(entries: &[Entry]) -> Option<Value> {
    if entries.is_empty() {
        return None;
    }
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|p, q| {
        (
            p.operation.as_str(),
            seconds(&p.time),
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                q.operation.as_str(),
                seconds(&q.time),
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
    let list = sorted
        .into_iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation));
            m.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = &e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), fieldsv1::to_json(&e.set));
            if !e.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.subresource));
            }
            Value::Object(m)
        })
        .collect();
    Some(Value::Array(list))
}

/// Most update entries kept; older ones are merged per apiVersion into an
/// `ancient-changes` entry, as upstream caps them.
pub const MAX_UPDATE_MANAGERS: usize = 10;

pub fn cap_updaters(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| !entries[i].applied())
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by_cached_key(|&i| (seconds(&entries[i].time).to_string(), entries[i].id()));
    let mut count = updaters.len();
    let mut gone = vec![false; entries.len()];
    // apiVersion → the oldest entry of that version.
    let mut first: Vec<(String, usize)> = Vec::new();
    for &i in &updaters {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&(_, f)) = first.iter().find(|(v, _)| *v == version) else {
            first.push((version, i));
            continue;
        };
        let bucket_id = Entry::new("ancient-changes", UPDATE, &version, "").id();
        let b = match (0..entries.len()).find(|&j| !gone[j] && entries[j].id() == bucket_id) {
            Some(b) => b,
            None => {
                // The version's oldest entry becomes its bucket.
                entries[f].manager = "ancient-changes".into();
                entries[f].subresource.clear();
                f
            }
        };
        if b == i {
            continue;
        }
        let (set, time) = (entries[i].set.clone(), entries[i].time.clone());
        entries[b].set = entries[b].set.union(&set);
        entries[b].time = time;
        gone[i] = true;
        count -= 1;
    }
    let mut i = 0;
    entries.retain(|_| {
        i += 1;
        !gone[i - 1]
    });
}
