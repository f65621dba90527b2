//! Applies a CRD version's `openAPIV3Schema` to a custom resource as
//! upstream's apiextensions-apiserver does: structural pruning, structural
//! defaulting, and kube-openapi's validation turned into field causes.
//!
//! Upstream quirks are kept on purpose, since kubectl shows them: a type
//! error names the JSON type it found (`Invalid value: "string"`), errors of
//! `anyOf`/`oneOf`/`allOf`/`not` sit on field `<nil>`, `maxLength` speaks of
//! bytes, and list-type errors index map values as `[key]`.
//!
//! This module holds the public entry points and `Schema`, the reading of a
//! schema node they share; `prune`, `defaults` and `validate` (with
//! `list_types` for list-type sets and maps) do the work, helped by `regex`
//! (Go's regexp syntax for `pattern`) and `formats` (string formats); Go's
//! renderings of values in messages are machinery's `gofmt`.

mod defaults;
mod formats;
mod list_types;
mod prune;
mod regex;
mod validate;

#[cfg(test)]
mod tests;

use crate::error::Cause;
use defaults::default_value;
use list_types::list_types_in_map;
use prune::{drop_nulls, prune_value};
use serde_json::{Map, Value};
use std::collections::HashSet;
use validate::{check, Failure};

/// Nesting deeper than this is left alone; no real schema gets there.
const MAX_DEPTH: usize = 64;
/// Type and object meta of a resource: the schema never prunes them.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Removes fields the schema does not declare (upstream's pruning), returning their paths
/// as upstream's strict field validation names them (e.g. `spec.foo`, `spec.items[0].bar`, `spec.m.k.x`).
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let root = Schema::of(schema);
    let mut pruned = Vec::new();
    prune_value(
        obj,
        Some(root),
        false,
        true,
        &mut String::new(),
        &mut pruned,
        0,
    );
    drop_nulls(obj, Some(root), true, 0);
    pruned.sort();
    pruned
}

/// Fills in `default`s of the schema where fields are absent (upstream's structural defaulting), also in array items and additionalProperties values.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    default_value(obj, Schema::of(schema), true, 0);
}

/// Validates the object against the schema (OpenAPI v3 validation as kube-openapi does it for CRDs), returning upstream's field causes.
pub fn validate(schema: &Value, obj: &Value) -> Vec<Cause> {
    let root = Schema::of(schema);
    // kube-openapi drops an error whose message it already has.
    let mut seen = HashSet::new();
    let mut causes: Vec<Cause> = check(root, obj, "", true, 0)
        .failures
        .into_iter()
        .filter(|f| seen.insert(f.message.clone()))
        .map(Failure::into_cause)
        .collect();
    if let Value::Object(map) = obj {
        list_types_in_map(root, map, "", true, 0, &mut causes);
    }
    // CEL rules (x-kubernetes-validations) are not evaluated.
    causes
}

/// One node of a schema; anything but an object reads as the empty schema.
#[derive(Clone, Copy)]
struct Schema<'a>(Option<&'a Map<String, Value>>);

impl<'a> Schema<'a> {
    fn of(v: &'a Value) -> Self {
        Schema(v.as_object())
    }

    fn get(self, key: &str) -> Option<&'a Value> {
        self.0?.get(key)
    }

    fn flag(self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool) == Some(true)
    }

    fn int(self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    fn num(self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    fn text(self, key: &str) -> &'a str {
        self.get(key).and_then(Value::as_str).unwrap_or("")
    }

    fn strings(self, key: &str) -> impl Iterator<Item = &'a str> {
        let list = self.get(key).and_then(Value::as_array);
        list.into_iter().flatten().filter_map(Value::as_str)
    }

    fn properties(self) -> impl Iterator<Item = (&'a String, Schema<'a>)> {
        let props = self.get("properties").and_then(Value::as_object);
        props.into_iter().flatten().map(|(k, v)| (k, Schema::of(v)))
    }

    fn property(self, name: &str) -> Option<Schema<'a>> {
        self.get("properties")?
            .as_object()?
            .get(name)
            .map(Schema::of)
    }

    fn items(self) -> Option<Schema<'a>> {
        self.get("items").filter(|v| v.is_object()).map(Schema::of)
    }

    /// `additionalProperties`: None when absent, Some(None) when a bool.
    fn additional(self) -> Option<Option<Schema<'a>>> {
        match self.get("additionalProperties")? {
            v @ Value::Object(_) => Some(Some(Schema::of(v))),
            Value::Bool(_) => Some(None),
            _ => None,
        }
    }

    /// The schema of one map value: its property, else additionalProperties.
    fn field(self, name: &str) -> Option<Schema<'a>> {
        self.property(name).or_else(|| self.additional().flatten())
    }

    fn branches(self, key: &str) -> Vec<Schema<'a>> {
        let list = self.get(key).and_then(Value::as_array);
        list.into_iter().flatten().map(Schema::of).collect()
    }

    fn default(self) -> Option<&'a Value> {
        self.get("default").filter(|v| !v.is_null())
    }

    fn nullable(self) -> bool {
        self.flag("nullable")
    }

    fn preserves_unknown(self) -> bool {
        self.flag("x-kubernetes-preserve-unknown-fields")
    }

    fn embedded(self) -> bool {
        self.flag("x-kubernetes-embedded-resource")
    }

    fn types(self) -> Vec<&'a str> {
        if self.flag("x-kubernetes-int-or-string") {
            return vec!["integer", "string"];
        }
        match self.text("type") {
            "" => vec![],
            t => vec![t],
        }
    }

    /// The format as upstream validates it: CRDs drop formats Kubernetes does not support for the type.
    fn format(self, types: &[&str]) -> &'a str {
        let f = self.text("format");
        let kept = match types {
            [] | ["string"] | [_, _, ..] => formats::known(f),
            ["integer"] => f == "int32" || f == "int64",
            ["number"] => f == "float" || f == "double",
            _ => false,
        };
        if kept {
            f
        } else {
            ""
        }
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}
