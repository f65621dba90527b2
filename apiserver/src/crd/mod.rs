//! CustomResourceDefinitions (apiextensions.k8s.io/v1) and the custom
//! resources they define, served as upstream's apiextensions-apiserver
//! serves them: the CRD kind's own rules (`definition`), each version's
//! structural schema applied to objects (`schema`), the versions as catalog
//! resources (`served`), the controller that accepts names, establishes and
//! finalizes CRDs (`controller`), and their tables (`printer`).

pub mod controller;
pub mod definition;
pub mod printer;
pub mod schema;
pub mod served;

use crate::error::{ApiError, Cause};
use crate::registry::Registry;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;

/// Held by a deleting CRD until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The CustomResourceDefinition kind itself.
pub fn definitions() -> &'static Resource {
    skiff_machinery::catalog::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("CRDs in the catalog")
}

/// The CRD that defines a custom resource, as its watch cache holds it.
pub fn definition_of(reg: &Registry, res: &Resource) -> Option<Value> {
    let crds = definitions();
    let entry = reg.cache(crds).get(&crds.key(None, &res.custom?.crd))?;
    Some(entry.object())
}

/// Whether `res` is the CustomResourceDefinition kind itself.
pub fn is_definitions(res: &Resource) -> bool {
    (res.group, res.plural) == ("apiextensions.k8s.io", "customresourcedefinitions")
}

/// A custom resource's schema, when its version has one.
fn schema_of(res: &Resource) -> Option<&'static Value> {
    res.custom.map(|c| &c.schema).filter(|s| s.is_object())
}

/// Upstream's structural defaulting of a custom resource.
pub fn default_object(res: &Resource, obj: &mut Value) {
    if let Some(s) = schema_of(res) {
        schema::apply_defaults(s, obj);
    }
}

/// Drops what the schema does not declare; returns the fields dropped.
pub fn prune_object(res: &Resource, obj: &mut Value) -> Vec<String> {
    schema_of(res).map_or_else(Vec::new, |s| schema::prune(s, obj))
}

/// Where the scale subresource's `key` (`specReplicasPath`, …) points in a
/// custom resource, as a JSON pointer (`.spec.replicas` → `/spec/replicas`).
pub fn scale_pointer(res: &Resource, key: &str) -> Option<String> {
    res.custom?
        .scale
        .get(key)
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(|p| p.replace('.', "/"))
}

/// A custom resource's validation: its schema, and the scale subresource's
/// replicas as an int32 when it has one.
pub fn validate_object(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = schema_of(res).map_or_else(Vec::new, |s| schema::validate(s, obj));
    if let Some(pointer) = scale_pointer(res, "specReplicasPath") {
        if let Some(v) = obj.pointer(&pointer) {
            let field = pointer.trim_start_matches('/').replace('/', ".");
            match v.as_i64() {
                Some(n) if (0..=i32::MAX as i64).contains(&n) => {}
                Some(_) => {
                    causes.push(Cause::invalid(field, v, "should be a non-negative integer"))
                }
                None => causes.push(Cause::invalid(field, v, "must be an integer")),
            }
        }
    }
    causes
}

/// Sets (or replaces) a condition of a CRD's status; true when it changed
/// anything but the transition time.
pub fn set_condition(
    crd: &mut Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> bool {
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    let conditions = &mut crd["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return false;
    };
    let now = crate::meta::now_rfc3339();
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] == status && c["reason"] == reason && c["message"] == message {
                return false;
            }
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => list.push(json!({
            "type": kind, "status": status, "lastTransitionTime": now,
            "reason": reason, "message": message,
        })),
    }
    true
}

/// Whether a CRD's condition of this type is True.
pub fn condition_true(crd: &Value, kind: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Creating objects of a CRD being deleted is refused, as upstream's
/// handler refuses it (405).
pub fn refuse_create_while_terminating(reg: &Registry, res: &Resource) -> Result<(), ApiError> {
    let terminating =
        definition_of(reg, res).is_some_and(|crd| crate::meta::deletion_timestamp(&crd).is_some());
    if terminating {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "create is not supported on resources of kind \"{}.{}\"",
                res.plural, res.group
            ),
        ));
    }
    Ok(())
}
