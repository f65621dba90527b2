//! What a field set needs to know of a kind's types, as upstream reads it
//! from OpenAPI (`x-kubernetes-list-type`, `-list-map-keys`, `-map-type`):
//! which lists are associative (and by which keys), which are sets of
//! primitives, and which values are atomic (replaced and owned whole).
//!
//! The strategic-merge metadata answers most of it: a list with a merge key
//! is associative by that key, one merged as a set is a set, every other
//! list is atomic. `EXTRA` adds what differs for apply: lists keyed by more
//! than their merge key, and atomic structs and maps. Kinds the catalog does
//! not know (custom resources without a schema) are "deduced": maps are
//! granular, lists atomic, and every map key is owned as itself.

use crate::strategic_merge::{self, FieldPatch};
use serde_json::{json, Value};

/// The type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A built-in kind's value: its fields are named fields. The name is a
    /// type of the patch metadata or of `EXTRA`; `None` when nothing more is
    /// known (its maps are granular and its lists atomic).
    Typed(Option<&'static str>),
    /// A kind without a schema.
    Deduced,
    /// A custom resource, typed by its CRD version's `openAPIV3Schema`:
    /// the root (whose `metadata` is ObjectMeta), then any node below it.
    CustomRoot(&'static Value),
    Custom(&'static Value),
    /// Replaced and owned as a whole.
    Atomic,
}

/// How a list is merged and owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum List {
    Atomic,
    /// A set of primitives: items are owned by value (`v:`).
    Set,
    /// Items are owned by their key fields (`k:`); a missing key field takes
    /// its default, if it has one.
    Map(Vec<&'static str>, &'static [(&'static str, &'static str)]),
}

enum Extra {
    /// Keyed by these fields (with defaults), instead of the merge key alone.
    Keys(
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    /// The value (or each item) is of this type.
    Child(&'static str),
    Atomic,
}

const PROTOCOL_TCP: &[(&str, &str)] = &[("protocol", "TCP")];

#[rustfmt::skip]
const EXTRA: &[(&str, &str, Extra)] = &[
    ("Container", "ports", Extra::Keys(&["containerPort", "protocol"], PROTOCOL_TCP)),
    ("ServiceSpec", "ports", Extra::Keys(&["port", "protocol"], PROTOCOL_TCP)),
    ("PodSpec", "topologySpreadConstraints", Extra::Keys(&["topologyKey", "whenUnsatisfiable"], &[])),
    // LabelSelector (+structType=atomic), and maps marked +mapType=atomic.
    ("WorkloadSpec", "selector", Extra::Atomic),
    ("ServiceSpec", "selector", Extra::Atomic),
    ("PodSpec", "nodeSelector", Extra::Atomic),
    // Items that are atomic structs (OwnerReference, LocalObjectReference).
    ("ObjectMeta", "ownerReferences", Extra::Child("AtomicItem")),
    ("PodSpec", "imagePullSecrets", Extra::Child("AtomicItem")),
    // env[].valueFrom's references are atomic structs.
    ("Container", "env", Extra::Child("EnvVar")),
    ("EnvVar", "valueFrom", Extra::Child("EnvVarSource")),
    ("EnvVarSource", "configMapKeyRef", Extra::Atomic),
    ("EnvVarSource", "secretKeyRef", Extra::Atomic),
    ("EnvVarSource", "fieldRef", Extra::Atomic),
    ("EnvVarSource", "resourceFieldRef", Extra::Atomic),
];

impl Ty {
    /// The type of a kind's objects.
    pub fn root(kind: &str) -> Ty {
        match strategic_merge::root_type(kind) {
            Some(root) => Ty::Typed(Some(root)),
            None if crate::catalog::RESOURCES.iter().any(|r| r.kind == kind) => Ty::Typed(None),
            None => Ty::Deduced,
        }
    }

    /// A custom resource's type, from its schema.
    pub fn custom_root(schema: &'static Value) -> Ty {
        Ty::CustomRoot(schema)
    }

    /// Whether the keys of this map are a struct's named fields (owned only
    /// through what they hold) rather than map keys (owned as themselves).
    pub fn named(self) -> bool {
        match self {
            Ty::Typed(_) | Ty::CustomRoot(_) => true,
            // An object of declared properties is a struct; one of
            // additionalProperties a map.
            Ty::Custom(s) => s.get("properties").is_some(),
            Ty::Deduced | Ty::Atomic => false,
        }
    }

    /// The type of `field`'s value — of its items for a list — and how a
    /// list there is owned.
    pub fn field(self, field: &str) -> (Ty, List) {
        match self {
            Ty::CustomRoot(_) if field == "metadata" => {
                return (Ty::Typed(Some("ObjectMeta")), List::Atomic)
            }
            Ty::CustomRoot(s) | Ty::Custom(s) => return custom_field(s, field),
            _ => {}
        }
        let Ty::Typed(Some(ty)) = self else {
            return (
                if self == Ty::Deduced {
                    Ty::Deduced
                } else {
                    Ty::Typed(None)
                },
                List::Atomic,
            );
        };
        let extra = EXTRA.iter().find(|(t, f, _)| *t == ty && *f == field);
        if let Some((_, _, Extra::Atomic)) = extra {
            return (Ty::Atomic, List::Atomic);
        }
        let (child, patch) = strategic_merge::field_patch(ty, field);
        let child = match extra {
            Some((_, _, Extra::Child("AtomicItem"))) => Ty::Atomic,
            Some((_, _, Extra::Child(c))) => Ty::Typed(Some(c)),
            _ => Ty::Typed(child),
        };
        let list = match (extra, patch) {
            (Some((_, _, Extra::Keys(keys, defaults))), _) => List::Map(keys.to_vec(), defaults),
            (_, FieldPatch::Merge("")) => List::Set,
            (_, FieldPatch::Merge(key)) => List::Map(vec![key], &[]),
            (_, FieldPatch::Replace) => return (Ty::Atomic, List::Atomic),
            (_, FieldPatch::Default) => List::Atomic,
        };
        (child, list)
    }
}

/// A field of a custom resource's schema node, as structured-merge-diff
/// reads CRD schemas: `x-kubernetes-list-type` (`map` by
/// `x-kubernetes-list-map-keys`, `set`, else atomic) and
/// `x-kubernetes-map-type: atomic`; where the schema keeps unknown fields,
/// what it does not declare is deduced.
fn custom_field(node: &'static Value, field: &str) -> (Ty, List) {
    let declared = node
        .pointer("/properties")
        .and_then(|p| p.get(field))
        .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
    let Some(child) = declared else {
        return (Ty::Deduced, List::Atomic);
    };
    if child.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
        return (Ty::Atomic, List::Atomic);
    }
    let Some(items) = child
        .get("items")
        .filter(|_| child.get("type") == Some(&json!("array")))
    else {
        return (Ty::Custom(child), List::Atomic);
    };
    let item_ty = if items.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
        Ty::Atomic
    } else {
        Ty::Custom(items)
    };
    match child.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&'static str> = child
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            (item_ty, List::Map(keys, &[]))
        }
        Some("set") => (item_ty, List::Set),
        _ => (Ty::Atomic, List::Atomic),
    }
}

/// An empty object of a kind as upstream's Go types make it (struct fields
/// are there, empty; some lists are null). Updates on create are compared
/// against it, so a field set on create is owned with `"."` exactly where
/// upstream's is.
pub fn empty_object(kind: &str) -> Value {
    let template = json!({"metadata": {}, "spec": {"containers": null}});
    match strategic_merge::root_type(kind) {
        Some("Workload") => json!({"metadata": {}, "spec": {
            "selector": null, "template": template, "strategy": {}, "updateStrategy": {}}, "status": {}}),
        Some("Pod") => json!({"metadata": {}, "spec": {"containers": null}, "status": {}}),
        Some("PodTemplate") => json!({"metadata": {}, "template": template}),
        Some("CronJob") => json!({"metadata": {}, "spec": {"jobTemplate": {"metadata": {},
            "spec": {"template": template}}}, "status": {}}),
        Some("Service") => json!({"metadata": {}, "spec": {}, "status": {"loadBalancer": {}}}),
        Some("Object") | None => json!({"metadata": {}}),
        Some(_) => json!({"metadata": {}, "spec": {}, "status": {}}),
    }
}
