//! The Apply operation (server-side apply): merge the applied configuration
//! into the live object, make the fields it sets the applier's, remove what
//! the applier set last time and nobody owns any more, and refuse to change a
//! field another manager owns unless forced. Also upstream's bridges from
//! client-side apply for the `kubectl` manager: conflicts over fields whose
//! live value is still the last-applied one are not conflicts, and the
//! last-applied annotation follows what is applied.

use super::entries::{self, Entry, APPLY};
use super::path::{display, Path};
use super::set::Set;
use super::{schema, set_entries, strip, typed, update, without_managed_fields, Scope};
use serde_json::{Map, Value};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The owner, as messages name it (`"kubectl-edit" using apps/v1`).
    pub manager: String,
    pub path: Path,
}

impl Conflict {
    /// `.spec.replicas`
    pub fn field(&self) -> String {
        display(&self.path)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApplyError {
    /// The request is wrong (upstream's 400s, and configurations its types reject).
    BadRequest(String),
    /// Fields owned by other managers would change (a 409).
    Conflicts {
        message: String,
        conflicts: Vec<Conflict>,
    },
    /// The stored object or its entries cannot be read.
    Internal(String),
}

/// Applies `config` as `manager` to `live` (`{}` when creating), returning
/// the new object with its managedFields.
pub fn apply(
    scope: &Scope,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let mut result = match apply_once(scope, live, config, manager, force, now) {
        Err(ApplyError::Conflicts { conflicts, .. }) if manager == "kubectl" && !force => {
            match allowed_by_last_applied(scope, live) {
                // Only fields client-side apply left as they are: take them over.
                Some(allowed) if conflicts.iter().all(|c| allowed.has(&c.path)) => {
                    apply_once(scope, live, config, manager, true, now)
                }
                Some(allowed) => Err(conflicts_error(
                    conflicts
                        .into_iter()
                        .filter(|c| !allowed.has(&c.path))
                        .collect(),
                )),
                None => Err(conflicts_error(conflicts)),
            }
        }
        r => r,
    }?;
    // The last-applied annotation, where it exists, follows kubectl's applies.
    let has_annotation = result
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if manager == "kubectl" && has_annotation {
        result["metadata"]["annotations"][LAST_APPLIED] = Value::String(last_applied(config));
    }
    Ok(result)
}

fn apply_once(
    scope: &Scope,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let ty = scope.ty();
    let (av, kind) = (str_at(config, "/apiVersion"), str_at(config, "/kind"));
    if av != scope.api_version || kind != scope.kind {
        return Err(ApplyError::BadRequest(format!(
            "invalid object type: {}",
            gvk(av, kind)
        )));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    typed::validate(config, ty).map_err(|e| {
        ApplyError::BadRequest(format!(
            "failed to create typed patch object ({}): {e}",
            gvk(av, kind)
        ))
    })?;
    let internal = |e: String| ApplyError::Internal(e);
    let mut managers = entries::decode(live.pointer("/metadata/managedFields"))
        .map_err(|e| internal(format!("failed to decode managed fields: {e}")))?;
    let live = without_managed_fields(live);
    if managers.is_empty() {
        // What was there before anyone applied is owned by someone else.
        let empty = schema::empty_object(scope.kind);
        update::record(
            scope,
            &empty,
            &live,
            &mut managers,
            "before-first-apply",
            now,
        )
        .map_err(|e| internal(format!("failed to create manager for existing fields: {e}")))?;
    }
    let me = Entry::new(manager, APPLY, scope.api_version, scope.subresource);
    let merged = typed::merge(&live, config, ty)
        .map_err(|e| internal(format!("failed to merge config: {e}")))?;
    let applied = scope.filter(&typed::field_set(config, ty).map_err(internal)?);
    let last = match managers.iter_mut().find(|e| e.same_manager(&me)) {
        Some(e) => {
            e.api_version = scope.api_version.to_string();
            Some(std::mem::replace(&mut e.set, applied))
        }
        None => {
            managers.push(Entry {
                set: applied,
                ..me.clone()
            });
            None
        }
    };
    let new = prune(&merged, &managers, last.as_ref(), scope)
        .map_err(|e| internal(format!("failed to prune fields: {e}")))?;

    // What changes decides conflicts, and leaves the other managers.
    let cmp = scope.filter_comparison(typed::compare(&live, &new, ty).map_err(internal)?);
    let changed = cmp.modified.union(&cmp.added);
    let mut others: Vec<&mut Entry> = managers
        .iter_mut()
        .filter(|e| !e.same_manager(&me))
        .collect();
    others.sort_by_cached_key(|e| e.id());
    let mut conflicts = Vec::new();
    for e in others {
        let lost = e.set.intersection(&changed);
        conflicts.extend(lost.paths().into_iter().map(|path| Conflict {
            manager: e.describe(),
            path,
        }));
        e.set = e.set.difference(&lost).difference(&cmp.removed);
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts_error(conflicts));
    }
    let changed = new != live;
    for e in managers.iter_mut().filter(|e| e.same_manager(&me)) {
        e.set = strip(&e.set);
        if changed {
            e.time = Some(now.to_string());
        }
    }
    managers.retain(|e| !e.set.is_empty());
    let mut out = if changed { new } else { live };
    set_entries(&mut out, &managers);
    Ok(out)
}

/// Removes what the applier owned last time (`last`) and no longer applies,
/// unless another manager owns it — upstream's prune, including its adding
/// back of what others own and of what was never the applier's.
fn prune(
    merged: &Value,
    managers: &[Entry],
    last: Option<&Set>,
    scope: &Scope,
) -> Result<Value, String> {
    let Some(last) = last.filter(|s| !s.is_empty()) else {
        return Ok(merged.clone());
    };
    let ty = scope.ty();
    let named = |s: &Set| typed::with_named_fields(s, ty);
    let fields_of = |v: &Value| typed::field_set(v, ty).map(|s| named(&s));
    let last = named(last);
    let owned = named(&managers.iter().fold(Set::new(), |acc, e| acc.union(&e.set)));
    let all = fields_of(merged)?;
    // Without everything owned last time, then with what someone owns put back…
    let without_last = fields_of(&typed::remove(merged, &last, ty)?)?;
    let owned_back = typed::remove(merged, &all.difference(&without_last.union(&owned)), ty)?;
    // …and only what was the applier's actually goes.
    let kept = fields_of(&owned_back)?;
    typed::remove(merged, &all.difference(&kept).intersection(&last), ty)
}

/// The fields of the last client-side apply whose live value is still the
/// applied one (upstream's allowed conflicts for `kubectl`).
fn allowed_by_last_applied(scope: &Scope, live: &Value) -> Option<Set> {
    let ty = scope.ty();
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if str_at(&last, "/apiVersion") != scope.api_version {
        return None;
    }
    typed::validate(&last, ty).ok()?;
    let fields = typed::field_set(&last, ty).ok()?;
    let cmp = typed::compare(&last, &without_managed_fields(live), ty).ok()?;
    Some(
        fields
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// Upstream's 409 wording, with conflicts grouped by manager.
fn conflicts_error(conflicts: Vec<Conflict>) -> ApplyError {
    let message = match conflicts.as_slice() {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager,
            one.field()
        ),
        _ => {
            let mut lines = Vec::new();
            let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
            managers.dedup();
            for m in managers {
                lines.push(format!("conflicts with {m}:"));
                lines.extend(
                    conflicts
                        .iter()
                        .filter(|c| c.manager == m)
                        .map(|c| format!("- {}", c.field())),
                );
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    ApplyError::Conflicts { message, conflicts }
}

/// The last-applied annotation's value: the configuration without the
/// annotation, as compact JSON with sorted keys and a newline.
fn last_applied(config: &Value) -> String {
    let mut c = config.clone();
    if let Some(a) = c
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    format!("{}\n", sorted(&c))
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `apps/v1, Kind=Deployment`, `/v1, Kind=Pod`, as upstream prints a kind.
fn gvk(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}
