//! Response bodies: single objects, `<Kind>List`s and meta.k8s.io/v1 Tables,
//! chosen by the request's Accept header.

use crate::registry::ListResult;
use crate::tables;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;

/// What the client asked to get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// A Table; the flag says whether rows carry the full object (`includeObject=Object`).
    Table(IncludeObject),
    /// Metadata only (`as=PartialObjectMetadata[List]`), as metadata informers ask.
    Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

pub fn negotiate(accept: Option<&str>, include: Option<&str>) -> Format {
    let first = accept.and_then(|a| a.split(',').next()).unwrap_or("");
    if !first.contains("g=meta.k8s.io") {
        return Format::Json;
    }
    if first.contains("as=PartialObjectMetadata") {
        return Format::Metadata;
    }
    if !first.contains("as=Table") {
        return Format::Json;
    }
    Format::Table(match include {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    })
}

pub fn json_response(code: StatusCode, body: impl Into<Bytes>) -> Response {
    let body: Bytes = body.into();
    (
        code,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

pub fn value_response(code: StatusCode, v: &Value) -> Response {
    json_response(code, serde_json::to_vec(v).unwrap_or_default())
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

fn row(res: &Resource, obj: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let cells = if let Some(custom) = res.custom {
        crate::crd::printer::cells(custom, obj, now)
    } else if tables::columns(res.plural).is_some() {
        tables::cells(res.plural, obj, now)
    } else {
        let age = obj
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| tables::human_duration(now.duration_since(t).unsigned_abs()))
            .unwrap_or_else(|| "<unknown>".into());
        vec![json!(crate::meta::name(obj)), json!(age)]
    };
    let mut r = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_metadata(obj),
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

pub fn column_definitions(res: &Resource) -> Value {
    if let Some(custom) = res.custom {
        return crate::crd::printer::column_definitions(custom);
    }
    tables::column_definitions_json(
        tables::columns(res.plural).unwrap_or(tables::default_columns()),
    )
}

/// A Table of some objects.
pub fn table(
    res: &Resource,
    objs: &[&Value],
    rv: &str,
    cont: Option<&str>,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objs.iter().map(|o| row(res, o, include, now)).collect();
    let mut md = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        md["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": md,
        "columnDefinitions": if with_columns { column_definitions(res) } else { json!([]) },
        "rows": rows,
    })
}

/// How much of a list response is written at a time.
const LIST_CHUNK: usize = 256 << 10;

/// A list response, written from pre-serialized items without re-encoding them.
pub fn list_response(
    res: &Resource,
    api_version: &str,
    list: &ListResult,
    format: Format,
) -> Response {
    let rv = list.revision.to_string();
    if format == Format::Metadata {
        let items: Vec<Value> = list
            .items
            .iter()
            .map(|e| partial_metadata(&e.object()))
            .collect();
        let mut md = json!({"resourceVersion": rv});
        if let Some(c) = &list.continue_token {
            md["continue"] = json!(c);
        }
        let body = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": md, "items": items});
        return value_response(StatusCode::OK, &body);
    }
    if let Format::Table(include) = format {
        let parsed: Vec<Value> = list.items.iter().map(|e| e.object()).collect();
        let objs: Vec<&Value> = parsed.iter().collect();
        let t = table(
            res,
            &objs,
            &rv,
            list.continue_token.as_deref(),
            include,
            true,
        );
        return value_response(StatusCode::OK, &t);
    }
    let mut md = json!({"resourceVersion": rv});
    if let Some(c) = &list.continue_token {
        md["continue"] = json!(c);
    }
    if let Some(r) = list.remaining {
        md["remainingItemCount"] = json!(r);
    }
    let head = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        res.list_kind(),
        api_version,
        md
    );
    // Streamed in chunks rather than built whole: a list of 10,000 pods is
    // tens of megabytes, which would otherwise all be in memory at once.
    let items: std::sync::Arc<[_]> = list.items.clone().into();
    let chunks = futures::stream::unfold(Some((items, 0usize)), move |state| {
        let head = (state.as_ref().map(|s| s.1) == Some(0)).then(|| head.clone());
        async move {
            let (items, start) = state?;
            let mut out = BytesMut::with_capacity(LIST_CHUNK + 4096);
            if let Some(head) = head {
                out.put_slice(head.as_bytes());
            }
            let mut i = start;
            while i < items.len() && out.len() < LIST_CHUNK {
                if i > 0 {
                    out.put_u8(b',');
                }
                items[i].json.write_to(&mut out);
                i += 1;
            }
            let rest = if i < items.len() {
                Some((items, i))
            } else {
                out.put_slice(b"]}");
                None
            };
            Some((Ok::<_, std::convert::Infallible>(out.freeze()), rest))
        }
    });
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// One object, as JSON or as a one-row Table.
pub fn object_response(res: &Resource, code: StatusCode, obj: &Value, format: Format) -> Response {
    match format {
        Format::Table(include) if obj.get("kind").and_then(Value::as_str) == Some(res.kind) => {
            let rv = crate::meta::resource_version(obj).unwrap_or("").to_string();
            value_response(code, &table(res, &[obj], &rv, None, include, true))
        }
        Format::Metadata if obj.get("kind").and_then(Value::as_str) == Some(res.kind) => {
            value_response(code, &partial_metadata(obj))
        }
        _ => value_response(code, obj),
    }
}

pub fn bytes_line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}
