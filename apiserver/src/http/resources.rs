//! The resource verbs: get, list, watch, create, update, patch, delete and
//! deletecollection on `/api` and `/apis` paths, and their subresources.

use super::output::{self, Format};
use super::request::{self, Query, Target};
use super::watch;
use crate::conversion;
use crate::error::ApiError;
use crate::meta;
use crate::registry::{
    strategy, subresources, DeleteOptions, ListOptions, Part, Registry, Warnings, WriteOptions,
};
use crate::watchcache::Entry;
use axum::response::IntoResponse;
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use skiff_machinery::catalog::Subresource;
use skiff_machinery::{fields, labels};
use std::sync::Arc;

pub struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Query,
    pub content_type: String,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub user: Option<crate::auth::User>,
    /// The checks the user's writes must pass (see `WriteOptions::admit`).
    pub admit: Option<crate::registry::Admission>,
    pub body: Bytes,
}

pub async fn handle(reg: Arc<Registry>, call: Call<'_>) -> Response {
    let warnings = Warnings::default();
    let mut resp = handle_verb(reg, call, &warnings)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    for w in warnings.take() {
        let value = format!("299 - {}", serde_json::Value::String(w));
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

async fn handle_verb(
    reg: Arc<Registry>,
    call: Call<'_>,
    warnings: &Warnings,
) -> Result<Response, ApiError> {
    let write_options = |q: &Query| {
        write_options(q, warnings).map(|mut o| {
            o.admit = call.admit.clone();
            o
        })
    };
    // Writes whose field manager defaults to the client's program (upstream's managerOrUserAgent).
    let tracked = |q: &Query, subresource: Option<&'static str>| {
        write_options(q).map(|mut o| {
            o.field_manager
                .get_or_insert_with(|| super::patch::default_manager(call.user_agent.as_deref()));
            o.subresource = subresource;
            o
        })
    };
    let target = request::parse_path(call.path, &reg.served())?;
    let format = output::negotiate(call.accept.as_deref(), call.query.get("includeObject"));
    if !target.res.stored {
        // Reviews are answered in `super::route`, with the authorizer.
        return Err(ApiError::not_found_path());
    }
    let ns = target.namespace.as_deref();
    let res = target.res;
    if let Some(custom) = res.custom {
        // Conversion webhooks are not called: refuse what would need one,
        // as upstream answers when its webhook fails.
        let storage = conversion::storage_resource(res);
        if custom.webhook_conversion && !std::ptr::eq(storage, res) {
            return Err(ApiError::internal(format!(
                "conversion webhook for {}, Kind={} failed: skiff does not call conversion webhooks; use version {}",
                storage.api_version(),
                res.kind,
                storage.version
            )));
        }
    }
    // Versions sharing storage: the registry works on the stored version.
    let sres = conversion::storage_resource(res);
    let out = |obj: Value| conversion::from_storage(res, obj);
    match (call.method, &target.name, target.sub) {
        (&Method::GET, None, None) if call.query.flag("watch") => watch::serve(reg, &target, &call.query, format).await,
        (&Method::GET, None, None) => {
            let mut opts = list_options(&target, &call.query)?;
            opts.fields = conversion::field_selector_to_storage(res, opts.fields);
            let mut list = reg.list(sres, ns, &opts).await?;
            if !std::ptr::eq(res, sres) {
                list.items = list
                    .items
                    .iter()
                    .map(|e| Arc::new(Entry::from_object(e.key.clone(), &out(e.object()), e.mod_revision, &[])))
                    .collect();
            }
            Ok(output::list_response(res, &res.api_version(), &list, format))
        }
        (&Method::GET, Some(name), None) => {
            let obj = out(reg.get(sres, ns, name).await?);
            Ok(output::object_response(res, StatusCode::OK, &obj, format))
        }
        (&Method::POST, None, None) => {
            check_duplicates(res, &call, warnings)?;
            let obj = request::decode_body(&call.content_type, &call.body)?;
            strategy::check_type(res, &obj)?;
            let created = reg.create(sres, ns, conversion::to_storage(res, obj), &tracked(&call.query, None)?).await?;
            Ok(output::object_response(res, StatusCode::CREATED, &out(created), format))
        }
        (&Method::PUT, Some(name), sub @ (None | Some(Subresource::Status | Subresource::EphemeralContainers))) => {
            check_duplicates(res, &call, warnings)?;
            let body = request::decode_body(&call.content_type, &call.body)?;
            strategy::check_type(res, &body)?;
            let body = conversion::to_storage(res, body);
            let part = part_of(sub);
            let updated = reg
                .update_with(sres, ns, name, part, &tracked(&call.query, None)?, "Update", |_| Ok(body.clone()))
                .await?;
            Ok(output::object_response(res, StatusCode::OK, &out(updated), format))
        }
        (&Method::PATCH, Some(name), sub @ (None | Some(Subresource::Status | Subresource::EphemeralContainers))) => {
            check_duplicates(res, &call, warnings)?;
            let part = part_of(sub);
            super::patch::patch(&reg, &target, name, part, &call, format, write_options(&call.query)?).await
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(&call.query, &call.body)?;
            let obj = out(reg.delete(sres, ns, name, &opts).await?);
            Ok(output::object_response(res, StatusCode::OK, &obj, Format::Json))
        }
        (&Method::DELETE, None, None) => delete_collection(&reg, &target, &call).await,
        (&Method::GET, Some(name), Some(Subresource::Status | Subresource::EphemeralContainers)) => {
            let obj = out(reg.get(sres, ns, name).await?);
            Ok(output::object_response(res, StatusCode::OK, &obj, format))
        }
        (&Method::GET, Some(name), Some(Subresource::Scale)) => {
            let obj = reg.get(res, ns, name).await?;
            Ok(output::value_response(StatusCode::OK, &subresources::to_scale(res, &obj)))
        }
        (&Method::PUT, Some(name), Some(Subresource::Scale)) => {
            let body = request::decode_body(&call.content_type, &call.body)?;
            let scale = subresources::update_scale(&reg, res, ns, name, &tracked(&call.query, Some("scale"))?, |_| Ok(body.clone())).await?;
            Ok(output::value_response(StatusCode::OK, &scale))
        }
        (&Method::PATCH, Some(name), Some(Subresource::Scale)) => {
            let patch_body = call.body.clone();
            let ct = call.content_type.clone();
            let scale = subresources::update_scale(&reg, res, ns, name, &tracked(&call.query, Some("scale"))?, |cur| {
                super::patch::apply_patch("Scale", &ct, cur, &patch_body)
            })
            .await?;
            Ok(output::value_response(StatusCode::OK, &scale))
        }
        (&Method::POST, Some(name), Some(Subresource::Binding)) => {
            let body = request::decode_body(&call.content_type, &call.body)?;
            let status = subresources::bind(&reg, res, ns, name, &body, &write_options(&call.query)?).await?;
            Ok(output::value_response(StatusCode::CREATED, &status))
        }
        (&Method::POST, Some(name), Some(Subresource::Eviction)) => {
            let body = request::decode_body(&call.content_type, &call.body)?;
            let status = subresources::evict(&reg, res, ns, name, &body).await?;
            Ok(output::value_response(StatusCode::CREATED, &status))
        }
        (&Method::PUT, Some(name), Some(Subresource::Finalize)) => {
            let body = request::decode_body(&call.content_type, &call.body)?;
            let finalizers = body.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            let updated = reg
                .update_with(res, ns, name, Part::Finalize, &tracked(&call.query, None)?, "Update", |cur| {
                    let mut next = cur.clone();
                    next["spec"]["finalizers"] = finalizers.clone();
                    Ok(next)
                })
                .await?;
            Ok(output::value_response(StatusCode::OK, &updated))
        }
        (_, _, Some(sub)) if res.has(sub) => Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("the {} subresource is served by the node agent, which is not available for this object", sub.name()),
        )),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The part of the object a write through `sub` may change.
fn part_of(sub: Option<Subresource>) -> Part {
    match sub {
        Some(Subresource::Status) => Part::Status,
        Some(Subresource::EphemeralContainers) => Part::EphemeralContainers,
        _ => Part::Main,
    }
}

/// Fields given twice in a JSON body: an error when validation is Strict, a warning when Warn.
fn check_duplicates(
    res: &skiff_machinery::catalog::Resource,
    call: &Call<'_>,
    warnings: &Warnings,
) -> Result<(), ApiError> {
    if !call.content_type.ends_with("json") {
        return Ok(());
    }
    let dups = super::duplicates::find(&call.body);
    if dups.is_empty() {
        return Ok(());
    }
    match call.query.get("fieldValidation") {
        Some("Strict") => {
            let list: Vec<String> = dups
                .iter()
                .map(|d| format!("duplicate field \"{d}\""))
                .collect();
            Err(ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                list.join(", "),
                kind = res.kind,
                v = res.version
            )))
        }
        Some("Ignore") => Ok(()),
        _ => {
            for d in dups {
                warnings.push(format!("duplicate field \"{d}\""));
            }
            Ok(())
        }
    }
}

pub fn list_options(target: &Target, q: &Query) -> Result<ListOptions, ApiError> {
    let labels = labels::Selector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {}", e.0)))?;
    let fields = fields::Selector::parse(q.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    fields
        .validate_for_resource(target.res)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = match q.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?
            .max(0) as usize,
    };
    let rv_match = q
        .get("resourceVersionMatch")
        .filter(|s| !s.is_empty())
        .map(String::from);
    if let Some(m) = &rv_match {
        if !matches!(m.as_str(), "Exact" | "NotOlderThan") {
            return Err(ApiError::bad_request(format!("resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\"")));
        }
        if q.get("resourceVersion").is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
    }
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: q
            .get("continue")
            .filter(|s| !s.is_empty())
            .map(String::from),
        resource_version: q.get("resourceVersion").map(String::from),
        resource_version_match: rv_match,
    })
}

pub fn write_options(q: &Query, warnings: &Warnings) -> Result<WriteOptions, ApiError> {
    let fv = q.get("fieldValidation").filter(|s| !s.is_empty());
    if let Some(fv) = fv {
        if !matches!(fv, "Ignore" | "Warn" | "Strict") {
            return Err(ApiError::bad_request(format!("fieldValidation: Unsupported value: {fv:?}: supported values: \"Ignore\", \"Strict\", \"Warn\"")));
        }
    }
    Ok(WriteOptions {
        dry_run: q.dry_run()?,
        field_manager: q
            .get("fieldManager")
            .filter(|s| !s.is_empty())
            .map(String::from),
        // As upstream decodes query booleans: present and not "0"/"false" is true.
        force: q
            .get("force")
            .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false"))),
        field_validation: crate::fieldvalidation::Mode::parse(fv),
        warnings: warnings.clone(),
        ..Default::default()
    })
}

/// DeleteOptions from the body (kubectl sends JSON) and the query.
pub fn delete_options(q: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let grace = b
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| q.get("gracePeriodSeconds").and_then(|s| s.parse().ok()));
    let mut policy = b
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| q.get("propagationPolicy").map(String::from));
    if policy.is_none() {
        match b
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| q.get("orphanDependents").map(|s| s == "true"))
        {
            Some(true) => policy = Some("Orphan".into()),
            Some(false) => policy = Some("Background".into()),
            None => {}
        }
    }
    let dry_run = q.dry_run()?
        || b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        propagation_policy: policy,
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_resource_version: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run,
    })
}

async fn delete_collection(
    reg: &Registry,
    target: &Target,
    call: &Call<'_>,
) -> Result<Response, ApiError> {
    let opts = list_options(target, &call.query)?;
    let del = delete_options(&call.query, &call.body)?;
    let list = reg
        .list(
            target.res,
            target.namespace.as_deref(),
            &ListOptions {
                limit: 0,
                continue_token: None,
                ..opts
            },
        )
        .await?;
    let mut deleted = Vec::new();
    for e in &list.items {
        let obj = e.object();
        let ns = meta::namespace(&obj).map(String::from);
        match reg
            .delete(target.res, ns.as_deref(), meta::name(&obj), &del)
            .await
        {
            Ok(obj) => deleted.push(obj),
            Err(err) if err.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    let body = json!({
        "kind": target.res.list_kind(),
        "apiVersion": target.res.api_version(),
        "metadata": {"resourceVersion": list.revision.to_string()},
        "items": deleted,
    });
    Ok(output::value_response(StatusCode::OK, &body))
}
