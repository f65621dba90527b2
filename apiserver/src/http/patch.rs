//! PATCH: JSON patch (RFC 6902), merge patch (RFC 7386), strategic merge
//! patch (kubectl apply), and apply patches (`kubectl apply --server-side`).

use super::output::{self, Format};
use super::request::{self, Target};
use super::resources::Call;
use crate::conversion;
use crate::error::ApiError;
use crate::registry::{Part, Registry, WriteOptions};
use axum::response::Response;
use http::StatusCode;
use serde_json::Value;

/// Applies a patch body of the given media type to `current`. The current
/// resourceVersion is dropped first, so only a version the patch itself
/// names becomes a precondition.
pub fn apply_patch(
    kind: &str,
    content_type: &str,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    if let Some(m) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
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
            Ok(doc)
        }
        "application/merge-patch+json" => {
            json_patch::merge(&mut doc, &object_patch(body)?);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" => {
            let patch = object_patch(body)?;
            skiff_machinery::strategic_merge::apply(kind, &doc, &patch)
                .map_err(|e| bad(e.to_string()))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
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
    if call.content_type == "application/apply-patch+yaml" {
        // Server-side apply: create when missing, else merge the applied
        // configuration into the live object by the kind's merge keys.
        if opts.field_manager.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager parameter",
            ));
        }
        let applied = request::decode_body(&call.content_type, &call.body)?;
        return match reg.get(sres, ns, name).await {
            Err(e) if e.code == 404 && part == Part::Main => {
                let mut obj = applied;
                crate::meta::metadata_mut(&mut obj)
                    .insert("name".into(), Value::String(name.into()));
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
                        let mut base = conversion::from_storage(res, cur.clone());
                        if let Some(m) = base.get_mut("metadata").and_then(Value::as_object_mut) {
                            m.remove("resourceVersion");
                        }
                        skiff_machinery::strategic_merge::apply(res.kind, &base, &applied)
                            .map(|v| conversion::to_storage(res, v))
                            .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))
                    })
                    .await?;
                Ok(output::object_response(
                    res,
                    StatusCode::OK,
                    &conversion::from_storage(res, updated),
                    format,
                ))
            }
        };
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

/// Upstream names a manager the client did not name after its user agent's
/// program (`kubectl/v1.32.4 (linux/amd64) …` → `kubectl`).
fn default_manager(user_agent: Option<&str>) -> String {
    user_agent
        .and_then(|ua| ua.split('/').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect()
}
