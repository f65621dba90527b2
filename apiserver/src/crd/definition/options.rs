//! Upstream's validation options: which rules an update of a CRD relaxes,
//! and which it keeps, given the stored CRD.

use super::conversion::ACCEPTED_REVIEW;
use super::openapi::{atomic_set_items, map_set_items, TYPES};
use super::structural::{non_structural, schema_any};
use super::{list, openapi_schema, per_version, text, version_schemas, Hoisted};
use serde_json::Value;
use std::collections::HashSet;

/// Rules upstream relaxes on update when the stored CRD already broke them,
/// so old objects stay writable.
pub(super) struct Opts {
    pub(super) schema_required: bool,
    pub(super) structural: bool,
    pub(super) valid_type: bool,
    pub(super) atomic_set: bool,
    pub(super) map_list_keys: bool,
    pub(super) recognized_review_version: bool,
    /// Version names ("" for the shared list) whose more than 8 selectable
    /// fields were already stored unchanged.
    pub(super) too_many_fields_ok: HashSet<String>,
}

impl Opts {
    pub(super) fn new(old: Option<&Value>) -> Self {
        let Some(old) = old else {
            return Opts {
                schema_required: true,
                structural: true,
                valid_type: true,
                atomic_set: true,
                map_list_keys: true,
                recognized_review_version: true,
                too_many_fields_ok: HashSet::new(),
            };
        };
        let versions = list(old, "versions");
        let schemas = version_schemas(versions);
        let old_has = |pred: &dyn Fn(&Value) -> bool| schemas.iter().any(|s| schema_any(s, pred));
        let review = old
            .pointer("/conversion/webhook/conversionReviewVersions")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        Opts {
            schema_required: versions
                .iter()
                .all(|v| openapi_schema(v.get("schema")).is_some()),
            structural: !schemas.iter().any(|s| non_structural(s)),
            valid_type: !old_has(&|s| {
                let t = text(s, "type");
                !t.is_empty() && !TYPES.contains(&t)
            }),
            atomic_set: !old_has(&|s| {
                let mut c = Vec::new();
                atomic_set_items(s, "", &mut c);
                !c.is_empty()
            }),
            map_list_keys: !old_has(&|s| {
                let mut c = Vec::new();
                map_set_items(s, "", &mut c);
                !c.is_empty()
            }),
            recognized_review_version: review.is_empty()
                || review
                    .iter()
                    .any(|v| ACCEPTED_REVIEW.contains(&v.as_str().unwrap_or(""))),
            too_many_fields_ok: HashSet::new(),
        }
    }

    pub(super) fn with_too_many_fields(mut self, spec: &Value, old: Option<&Value>) -> Self {
        let Some(old) = old else { return self };
        let (new, old) = (list(spec, "versions"), list(old, "versions"));
        let (hn, ho) = (Hoisted::new(new), Hoisted::new(old));
        let long = |f: Option<&Value>| f.and_then(Value::as_array).is_some_and(|a| a.len() > 8);
        // Which list each version has after hoisting; None for hoisted ones.
        let own = |v: &Value, hoisted: bool| {
            (!hoisted)
                .then(|| per_version(v, "selectableFields").cloned())
                .flatten()
        };
        let shared = |vs: &[Value], hoisted: bool| {
            vs.first()
                .filter(|_| hoisted)
                .and_then(|v| per_version(v, "selectableFields").cloned())
        };
        let old_shared = shared(old, ho.selectable);
        if long(old_shared.as_ref()) && old_shared == shared(new, hn.selectable) {
            self.too_many_fields_ok.insert(String::new());
        }
        for v in new {
            let name = text(v, "name");
            let Some(o) = old.iter().find(|o| text(o, "name") == name) else {
                continue;
            };
            let old_fields = own(o, ho.selectable);
            if long(old_fields.as_ref()) && old_fields == own(v, hn.selectable) {
                self.too_many_fields_ok.insert(name.to_string());
            }
        }
        self
    }
}
