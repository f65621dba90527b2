//! FieldsV1, the JSON form of a field set in `metadata.managedFields`: a
//! trie whose keys are serialized path elements, `{}` for a leaf, and `"."`
//! inside an element that is both owned itself and has owned fields below.
//! Keys come out in upstream's order (`"."` first, then fields, keys, values,
//! indices), so the text is byte for byte upstream's.

use super::path::PathElement;
use super::set::Set;
use serde_json::{Map, Value};

pub fn to_json(set: &Set) -> Value {
    Value::Object(contents(set, false))
}

fn contents(set: &Set, include_self: bool) -> Map<String, Value> {
    let mut out = Map::new();
    if include_self {
        out.insert(".".into(), Value::Object(Map::new()));
    }
    // Members and children walked together in element order.
    let mut elements: Vec<&PathElement> = set.members.iter().chain(set.children.keys()).collect();
    elements.sort();
    elements.dedup();
    for pe in elements {
        let value = match set.children.get(pe) {
            Some(c) => contents(c, set.members.contains(pe)),
            None => Map::new(),
        };
        out.insert(pe.serialize(), Value::Object(value));
    }
    out
}

pub fn from_json(v: &Value) -> Result<Set, String> {
    match v {
        Value::Object(_) => Ok(read(v)?.0.unwrap_or_default()),
        _ => Err("FieldsV1 must be a JSON object".into()),
    }
}

/// The set below one trie node, and whether the node is itself a member
/// (it says `"."`, or nothing is below it).
fn read(v: &Value) -> Result<(Option<Set>, bool), String> {
    let Value::Object(m) = v else {
        return Err(format!("expected a JSON object, got {v}"));
    };
    let mut children: Option<Set> = None;
    let mut member = false;
    for (k, child) in m {
        if k == "." {
            member = true;
            continue;
        }
        let Some(pe) = PathElement::parse(k)? else {
            continue;
        };
        let (grand, child_member) = read(child)?;
        let set = children.get_or_insert_with(Set::new);
        if child_member {
            set.members.insert(pe.clone());
        }
        if let Some(g) = grand {
            let merged = match set.children.remove(&pe) {
                Some(existing) => existing.union(&g),
                None => g,
            };
            set.children.insert(pe, merged);
        }
    }
    if children.is_none() {
        member = true;
    }
    Ok((children, member))
}
