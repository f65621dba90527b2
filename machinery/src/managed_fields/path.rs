//! Path elements, as structured-merge-diff names the parts of an object: a
//! field name, the key of an associative-list item, the value of a set item,
//! or an index. Their total order is upstream's (it decides the order of
//! FieldsV1 keys and of conflict lists), and so are their two spellings: the
//! FieldsV1 one (`f:name`, `k:{"name":"c"}`, `v:"x"`, `i:0`) and the one in
//! messages (`.name`, `[name="c"]`, `[="x"]`, `[0]`).

use serde_json::{Map, Value};
use std::cmp::Ordering;

#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of a map or struct.
    Field(String),
    /// An item of an associative list, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// An item of a set (a list of primitives), by its value.
    Value(Value),
    /// An item of an atomic list; never produced here, parsed for parity.
    Index(usize),
}

pub type Path = Vec<PathElement>;

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The FieldsV1 spelling.
    pub fn serialize(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(fields) => {
                let m: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; `Ok(None)` for a kind of element this version
    /// does not know, which upstream drops rather than rejects.
    pub fn parse(s: &str) -> Result<Option<PathElement>, String> {
        let (kind, rest) = s
            .split_once(':')
            .filter(|(k, _)| k.len() == 1)
            .ok_or_else(|| format!("missing colon: {s}"))?;
        let json =
            |r: &str| serde_json::from_str::<Value>(r).map_err(|e| format!("parsing {s:?}: {e}"));
        Ok(Some(match kind {
            "f" => PathElement::Field(rest.to_string()),
            "v" => PathElement::Value(json(rest)?),
            "k" => match json(rest)? {
                Value::Object(m) => PathElement::key(m.into_iter().collect()),
                _ => return Err(format!("parsing {s:?}: a key must be a JSON object")),
            },
            "i" => PathElement::Index(rest.parse().map_err(|e| format!("parsing {s:?}: {e}"))?),
            _ => return Ok(None),
        }))
    }

    /// A key element with its fields in upstream's (name) order.
    pub fn key(mut fields: Vec<(String, Value)>) -> PathElement {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    /// The spelling of conflict messages.
    pub fn display(&self) -> String {
        match self {
            PathElement::Field(f) => format!(".{f}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_string(v)))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(v) => format!("[={}]", value_string(v)),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// `.spec.template.spec.containers[name="nginx"].image`
pub fn display(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A value as upstream prints it in paths (strings quoted, the rest bare).
fn value_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_string(v)))
            .collect(),
        other => other.to_string(),
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// Upstream's total order of values: numbers (compared as numbers, ints and
/// floats alike), then strings, booleans, lists, maps and null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (l, r) in x.iter().zip(y) {
                let c = compare_values(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // Lexically by sorted key, then value; the shorter map first.
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|a, b| a.0.cmp(b.0));
            ys.sort_by(|a, b| a.0.cmp(b.0));
            for ((kx, vx), (ky, vy)) in xs.iter().zip(&ys) {
                let c = kx.cmp(ky).then_with(|| compare_values(vx, vy));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// Value equality as upstream decides a field changed (1 equals 1.0).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    let c = ka.cmp(kb).then_with(|| compare_values(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}
