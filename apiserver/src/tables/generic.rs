//! The two tables for kinds without a dedicated printer.
//!
//! * Built-ins upstream registers with `rest.NewDefaultTableConvertor`
//!   (roles, clusterroles, limitranges, customresourcedefinitions, …):
//!   NAME and CREATED AT, a `date` column holding the RFC 3339 timestamp.
//! * Custom resources whose CRD declares no printer columns: NAME and AGE.
//!   The CRD table convertor defaults to an `Age` column of type `date` and
//!   renders its cell as a human duration.

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{at, name};
use super::time::{age, created_at};
use super::{Column, META_CREATION_TIMESTAMP_DESC, NAME};

pub(super) static CREATED_AT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: META_CREATION_TIMESTAMP_DESC,
        priority: 0,
    },
];

pub(super) fn created_at_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    row![name(obj), created_at(obj)]
}

pub(super) static CUSTOM_RESOURCE_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Age",
        type_: "date",
        format: "",
        description: META_CREATION_TIMESTAMP_DESC,
        priority: 0,
    },
];

/// The Age cell follows the CRD convertor's `date` handling: no timestamp
/// is a null cell, an unparsable one "<invalid>".
pub(super) fn custom_resource_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let created = match at(obj, &["metadata", "creationTimestamp"]) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s.parse::<Timestamp>().is_err() => "<invalid>".into(),
        Some(Value::String(_)) => age(obj, now).into(),
        Some(_) => Value::Null,
    };
    vec![name(obj).into(), created]
}
