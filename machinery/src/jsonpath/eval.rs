//! Selecting values, after client-go's `util/jsonpath/jsonpath.go` as the API
//! server runs it for CRD columns: a missing key selects nothing
//! (`AllowMissingKeys(true)`), while a bad index, a filter over a non-list or
//! an ill-typed comparison fails the whole path.

use std::mem::discriminant;

use serde_json::Value;

use super::parse::{Node, Param};
use crate::gofmt;

/// Far more values than a column shows: a path that multiplies them (`..` after
/// `..`, say) fails rather than exhausting the server's memory.
const MAX_VALUES: usize = 1 << 20;

/// An evaluation error, with the values upstream's walker returns alongside it:
/// an existence filter still counts those.
pub(super) struct Failure<'a> {
    partial: Vec<&'a Value>,
    pub message: String,
}

type Eval<'a> = Result<Vec<&'a Value>, Failure<'a>>;

fn fail<'a>(partial: Vec<&'a Value>, message: impl Into<String>) -> Eval<'a> {
    Err(Failure {
        partial,
        message: message.into(),
    })
}

/// Fails once `out` holds more than [`MAX_VALUES`].
fn bounded<'a>(out: &[&Value]) -> Result<(), Failure<'a>> {
    if out.len() > MAX_VALUES {
        let message = "jsonpath selects too many values".into();
        return Err(Failure {
            partial: Vec::new(),
            message,
        });
    }
    Ok(())
}

/// Applies `nodes` in turn, starting from `input`.
pub(super) fn list<'a>(nodes: &'a [Node], input: Vec<&'a Value>) -> Eval<'a> {
    nodes
        .iter()
        .try_fold(input, |values, node| step(node, values))
}

fn step<'a>(node: &'a Node, input: Vec<&'a Value>) -> Eval<'a> {
    match node {
        Node::Field(name) => Ok(input
            .iter()
            .filter_map(|v| v.as_object()?.get(name))
            .collect()),
        Node::Wildcard => {
            let mut out = Vec::new();
            for v in input {
                out.extend(children(v));
                bounded(&out)?;
            }
            Ok(out)
        }
        Node::Recursive => recursive(input),
        Node::Array(params) => array(params, input),
        Node::Union(members) => {
            let mut out = Vec::new();
            for member in members {
                match list(member, input.clone()) {
                    Ok(values) => out.extend(values),
                    Err(failure) => return fail(input, failure.message),
                }
                bounded(&out)?;
            }
            Ok(out)
        }
        Node::Filter { left, op, right } => filter(left, op.as_deref(), right, input),
        Node::Text(text) => Ok(vec![text]),
        Node::Const(value) => Ok(vec![value; input.len()]),
        Node::Identifier(name) => fail(input, format!("unrecognized identifier {name}")),
    }
}

/// A map's values or a list's items.
fn children(v: &Value) -> Vec<&Value> {
    match v {
        Value::Object(map) => map.values().collect(),
        Value::Array(items) => items.iter().collect(),
        _ => Vec::new(),
    }
}

/// Each value with children, before its descendants. Leaves are left out (the
/// next step looks into containers), except non-empty strings, which upstream
/// counts for their bytes. Iterative, so deep documents cannot exhaust the stack.
fn recursive(input: Vec<&Value>) -> Eval<'_> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = input.into_iter().rev().collect();
    while let Some(v) = stack.pop() {
        let kids = children(v);
        if !kids.is_empty() || v.as_str().is_some_and(|s| !s.is_empty()) {
            out.push(v);
        }
        bounded(&out)?;
        stack.extend(kids.into_iter().rev());
    }
    Ok(out)
}

fn array<'a>(params: &[Param; 3], input: Vec<&'a Value>) -> Eval<'a> {
    let [start, end, step] = *params;
    let mut out = Vec::new();
    for &v in &input {
        let items = match v {
            Value::Null => continue,
            Value::Array(items) => items,
            other => {
                return fail(
                    input.clone(),
                    format!("{} is not array or slice", gofmt::type_name(other)),
                )
            }
        };
        let len = items.len() as i64;
        let mut from = if start.known { start.value } else { 0 };
        if from < 0 {
            from += len;
        }
        let mut to = if end.known { end.value } else { len };
        if to < 0 || (to == 0 && end.derived) {
            to += len;
        }
        // Upstream returns at the first empty selection, dropping later inputs.
        if from == to {
            return Ok(out);
        }
        if from < 0 || from >= len {
            let msg = format!("array index out of bounds: index {from}, length {len}");
            return fail(input.clone(), msg);
        }
        if to < 0 || to > len {
            let msg = format!(
                "array index out of bounds: index {}, length {len}",
                to.wrapping_sub(1)
            );
            return fail(input.clone(), msg);
        }
        if from > to {
            let msg = format!("starting index {from} is greater than ending index {to}");
            return fail(input.clone(), msg);
        }
        let by = match step {
            Param { known: false, .. } => 1,
            Param { value, .. } if value > 0 => value as usize,
            _ => return fail(input.clone(), "step must be > 0"),
        };
        out.extend(items[from as usize..to as usize].iter().step_by(by));
        bounded(&out)?;
    }
    Ok(out)
}

fn filter<'a>(
    left: &'a [Node],
    op: Option<&str>,
    right: &'a [Node],
    input: Vec<&'a Value>,
) -> Eval<'a> {
    let mut out = Vec::new();
    for &v in &input {
        let Value::Array(items) = v else {
            let msg = format!(
                "{} is not array or slice and cannot be filtered",
                gofmt::type_name(v)
            );
            return fail(input.clone(), msg);
        };
        for item in items {
            let lefts = list(left, vec![item]);
            let Some(op) = op else {
                // Upstream tests existence on whatever came back, even with an error.
                if !lefts.unwrap_or_else(|failure| failure.partial).is_empty() {
                    out.push(item);
                }
                continue;
            };
            let Some(l) = single(lefts, &input)? else {
                continue;
            };
            let Some(r) = single(list(right, vec![item]), &input)? else {
                continue;
            };
            match compare(op, l, r) {
                Ok(true) => out.push(item),
                Ok(false) => {}
                Err(msg) => return fail(out, msg),
            }
        }
        bounded(&out)?;
    }
    Ok(out)
}

/// The one value a side of a comparison selects; `None` skips the item.
fn single<'a>(side: Eval<'a>, input: &[&'a Value]) -> Result<Option<&'a Value>, Failure<'a>> {
    let message = match side {
        Ok(values) if values.len() <= 1 => return Ok(values.first().copied()),
        Ok(_) => "can only compare one element at a time".into(),
        Err(failure) => failure.message,
    };
    Err(Failure {
        partial: input.to_vec(),
        message,
    })
}

/// What Go's text/template comparisons (`eq`, `lt`, ...) accept.
#[derive(PartialEq, PartialOrd)]
enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// Integers as upstream decodes them (int64); others, even `1.0`, are float64.
fn scalar(v: &Value) -> Result<Scalar<'_>, String> {
    match v {
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Number(n) => Ok(match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Ok(Scalar::Str(s)),
        _ => Err("invalid type for comparison".into()),
    }
}

/// Upstream's comparisons fail (and fail the path) on differing kinds, so an
/// integer never equals a float, nor a string a number.
fn compare(op: &str, a: &Value, b: &Value) -> Result<bool, String> {
    if !matches!(op, "==" | "!=" | "<" | ">" | "<=" | ">=") {
        return Err(format!("unrecognized filter operator {op}"));
    }
    let (a, b) = (scalar(a)?, scalar(b)?);
    if discriminant(&a) != discriminant(&b) {
        return Err("incompatible types for comparison".into());
    }
    let less = || match a {
        Scalar::Bool(_) => Err("invalid type for comparison".to_string()),
        _ => Ok(a < b),
    };
    Ok(match op {
        "==" => a == b,
        "!=" => a != b,
        "<" => less()?,
        ">=" => !less()?,
        "<=" => less()? || a == b,
        _ => !(less()? || a == b),
    })
}
