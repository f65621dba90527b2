//! Field ownership (`metadata.managedFields`) and server-side apply, after
//! upstream's structured-merge-diff v4 and apimachinery's
//! `pkg/util/managedfields`.
//!
//! Every write records which manager set which fields. An *update* (create,
//! PUT, a non-apply PATCH) makes the fields it changed its manager's and takes
//! them from the others. An *apply* sends the fields a manager wants to own:
//! they are merged into the object, a field another manager owns and the
//! apply would change is a conflict (unless forced, which takes it over), and
//! fields the manager applied before but no longer applies are removed when
//! nobody else owns them.
//!
//! - `path`, `set`, `fieldsv1`: field paths, sets of them, and their JSON form;
//! - `schema`: which lists are keyed (and by what) and which values are atomic;
//! - `typed`: field sets of values, comparison, merge and removal;
//! - `entries`: managedFields entries, decoded, encoded and capped;
//! - `update`, `apply`: the two operations.

mod apply;
mod entries;
mod fieldsv1;
mod path;
mod schema;
mod set;
mod typed;
mod update;

#[cfg(test)]
mod tests;

pub use apply::{apply, ApplyError, Conflict};
pub use fieldsv1::{from_json as set_from_fields_v1, to_json as set_to_fields_v1};
pub use path::{display as path_string, Path, PathElement};
pub use set::Set;
pub use update::update;

use path::PathElement as Pe;
use serde_json::Value;

/// Which part of an object a write may own (upstream's reset fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    All,
    /// All but this top-level field: `status`, for writes to the main
    /// resource of a kind with a status subresource.
    AllBut(&'static str),
    /// Only this top-level field: `status` on the status subresource.
    Only(&'static str),
}

/// Where a write comes in: the object's kind and version, the subresource
/// ("" for the main resource) and what it may own.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub kind: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub keep: Keep,
    /// A custom resource's schema, which types its fields.
    pub schema: Option<&'static serde_json::Value>,
}

impl Scope<'_> {
    fn ty(&self) -> schema::Ty {
        match self.schema {
            Some(s) => schema::Ty::custom_root(s),
            None => schema::Ty::root(self.kind),
        }
    }

    /// `set` without what this write may not own.
    fn filter(&self, set: &Set) -> Set {
        match self.keep {
            Keep::All => set.clone(),
            Keep::AllBut(f) => set.recursive_difference(&Set::of(&[vec![Pe::Field(f.into())]])),
            Keep::Only(f) => {
                let pe = Pe::Field(f.into());
                let mut out = Set::new();
                if set.members.contains(&pe) {
                    out.members.insert(pe.clone());
                }
                if let Some(c) = set.child(&pe) {
                    out.children.insert(pe, c.clone());
                }
                out
            }
        }
    }

    fn filter_comparison(&self, c: typed::Comparison) -> typed::Comparison {
        typed::Comparison {
            added: self.filter(&c.added),
            modified: self.filter(&c.modified),
            removed: self.filter(&c.removed),
        }
    }
}

/// What nobody owns, whatever wrote it: type and identity, and what the
/// server keeps (upstream's stripped fields).
fn strip(set: &Set) -> Set {
    let field = |f: &str| Pe::Field(f.into());
    let mut paths = vec![
        vec![field("apiVersion")],
        vec![field("kind")],
        vec![field("metadata")],
    ];
    for f in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        paths.push(vec![field("metadata"), field(f)]);
    }
    set.difference(&Set::of(&paths))
}

/// The object without `metadata.managedFields` (it is never compared or owned).
fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    out
}

/// Writes the entries into `metadata.managedFields` (none: no field).
fn set_entries(obj: &mut Value, list: &[entries::Entry]) {
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    match entries::encode(list) {
        Some(v) => {
            meta.insert("managedFields".into(), v);
        }
        None => {
            meta.remove("managedFields");
        }
    }
}
