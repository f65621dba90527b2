//! PATCH: JSON patch (RFC 6902), merge patch (RFC 7386), strategic merge
//! patch (kubectl apply), and apply patches (`kubectl apply --server-side`).

use super::output::{self, Format};
use super::request::{self, Target};
use super::resources::Call;
use crate::conversion;
use crate::error::{ApiError, Cause};
use crate::registry::{check_fields, strategy, Part, Registry, WriteOptions};
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;
use skiff_machinery::managed_fields::{self, ApplyError};

/// Applies a patch body of the given media type to `current`. Only a
/// resourceVersion the patch changes becomes a precondition: one it leaves as
/// it was is dropped, so the write goes over whatever version is current
/// (kubectl's managed-fields migration replaces it with the same value).
pub fn apply_patch(
    kind: &str,
    content_type: &str,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    let bad = |e: String| ApiError::new(422, "Invalid", e);
    match content_type {
        "application/json-patch+json" => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &patch).map_err(|e| {
                bad(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
        }
        "application/merge-patch+json" => json_patch::merge(&mut doc, &object_patch(body)?),
        "application/strategic-merge-patch+json" => {
            let patch = object_patch(body)?;
            doc = skiff_machinery::strategic_merge::apply(kind, &doc, &patch)
                .map_err(|e| bad(e.to_string()))?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    let unchanged = crate::meta::resource_version(&doc) == crate::meta::resource_version(current);
    if unchanged {
        crate::meta::clear_resource_version(&mut doc);
    }
    Ok(doc)
}

/// A merge-style patch body: a JSON object.
fn object_patch(body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("the patch must be a JSON object"));
    }
    Ok(patch)
}

pub async fn patch(
    reg: &Registry,
    target: &Target,
    name: &str,
    part: Part,
    call: &Call<'_>,
    format: Format,
    mut opts: WriteOptions,
) -> Result<Response, ApiError> {
    let res = target.res;
    let sres = conversion::storage_resource(res);
    let ns = target.namespace.as_deref();
    let applying = call.content_type == "application/apply-patch+yaml";
    // Custom resources have no merge keys to patch strategically by.
    if res.custom.is_some() && call.content_type == "application/strategic-merge-patch+json" {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    check_patch_options(applying, &opts)?;
    if applying {
        return server_side_apply(reg, target, name, part, call, format, opts).await;
    }
    if opts.field_manager.is_none() {
        opts.field_manager = Some(default_manager(call.user_agent.as_deref()));
    }
    let ct = call.content_type.clone();
    let body = call.body.clone();
    let updated = reg
        .update_with(sres, ns, name, part, &opts, "Update", |cur| {
            let patched = apply_patch(
                res.kind,
                &ct,
                &conversion::from_storage(res, cur.clone()),
                &body,
            )?;
            Ok(conversion::to_storage(res, patched))
        })
        .await?;
    Ok(output::object_response(
        res,
        StatusCode::OK,
        &conversion::from_storage(res, updated),
        format,
    ))
}

/// Upstream's PatchOptions validation: an apply names its field manager,
/// and only an apply may be forced.
fn check_patch_options(applying: bool, opts: &WriteOptions) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if applying && opts.field_manager.as_deref().is_none_or(str::is_empty) {
        causes.push(Cause {
            message: "Required value: is required for apply patch".into(),
            ..Cause::required("fieldManager")
        });
    }
    if !applying && opts.force.is_some() {
        causes.push(Cause::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_kind(
        "meta.k8s.io",
        "PatchOptions",
        "",
        causes,
    ))
}

/// Server-side apply: the configuration is applied to the live object (an
/// empty one when there is none, which then is created), with field
/// ownership, conflicts and removal as upstream's field manager does them.
async fn server_side_apply(
    reg: &Registry,
    target: &Target,
    name: &str,
    part: Part,
    call: &Call<'_>,
    format: Format,
    mut opts: WriteOptions,
) -> Result<Response, ApiError> {
    let res = target.res;
    let sres = conversion::storage_resource(res);
    let ns = target.namespace.as_deref();
    let manager = opts.field_manager.clone().unwrap_or_default();
    let force = opts.force.unwrap_or(false);
    let mut config = request::decode_body(&call.content_type, &call.body)?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: the patch must be an object",
        ));
    }
    // Undeclared fields are never applied (Strict: an error, Warn: warnings).
    check_fields(res, &mut config, &opts)?;
    let url_name = |obj: &mut Value| {
        let m = crate::meta::metadata_mut(obj);
        match m.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != name => Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            ))),
            _ => {
                m.insert("name".into(), Value::String(name.into()));
                Ok(())
            }
        }
    };
    url_name(&mut config)?;
    match reg.get(sres, ns, name).await {
        Err(e) if e.code == 404 && part == Part::Main => {
            let obj = apply_config(res, part, &opts, &json!({}), &config, &manager, force)?;
            opts.applied = true;
            let created = reg
                .create(sres, ns, conversion::to_storage(res, obj), &opts)
                .await?;
            Ok(output::object_response(
                res,
                StatusCode::CREATED,
                &conversion::from_storage(res, created),
                format,
            ))
        }
        Err(e) => Err(e),
        Ok(_) => {
            let updated = reg
                .update_with(sres, ns, name, part, &opts, "Apply", |cur| {
                    // Only a version the configuration names is a precondition.
                    let mut live = conversion::from_storage(res, cur.clone());
                    crate::meta::clear_resource_version(&mut live);
                    let mut obj = apply_config(res, part, &opts, &live, &config, &manager, force)?;
                    strategy::apply_defaults(res, &mut obj);
                    Ok(conversion::to_storage(res, obj))
                })
                .await?;
            Ok(output::object_response(
                res,
                StatusCode::OK,
                &conversion::from_storage(res, updated),
                format,
            ))
        }
    }
}

fn apply_config(
    res: &Resource,
    part: Part,
    opts: &WriteOptions,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let now = crate::meta::now_rfc3339();
    strategy::with_field_scope(res, part, opts, |scope| {
        managed_fields::apply(scope, live, config, manager, force, &now)
    })
    .map_err(|e| match e {
        ApplyError::BadRequest(m) => ApiError::bad_request(m),
        ApplyError::Conflicts { message, conflicts } => ApiError::apply_conflict(
            message,
            conflicts
                .iter()
                .map(|c| (format!("conflict with {}", c.manager), c.field()))
                .collect(),
        ),
        ApplyError::Internal(m) => ApiError::internal(m),
    })
}

/// Upstream names a manager the client did not name after its user agent's
/// program (`kubectl/v1.32.4 (linux/amd64) …` → `kubectl`).
pub fn default_manager(user_agent: Option<&str>) -> String {
    user_agent
        .and_then(|ua| ua.split('/').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect()
}
