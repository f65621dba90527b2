//! API errors as upstream's `Status` objects: the reason, code and wording
//! kubectl prints as `Error from server (<Reason>): <message>`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};
use skiff_machinery::catalog::Resource;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// One field error of an `Invalid` status.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub kind: CauseKind,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CauseKind {
    Required,
    Invalid,
    NotSupported,
    Forbidden,
    Duplicate,
    TooLong,
    TooMany,
    NotFound,
    /// A value of the wrong JSON type (upstream's field.TypeInvalid).
    TypeInvalid,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Self {
        Cause {
            kind: CauseKind::Required,
            field: field.into(),
            message: "Required value".into(),
        }
    }

    /// `Invalid value: <value>: <detail>` as upstream's field.Invalid renders it.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            kind: CauseKind::Invalid,
            field: field.into(),
            message: format!("Invalid value: {shown}: {}", detail.as_ref()),
        }
    }

    /// `Required value: <detail>`: upstream's field.Required with a detail.
    pub fn required_detail(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Cause {
            message: format!("Required value: {}", detail.as_ref()),
            ..Cause::required(field)
        }
    }

    /// `Too many: <actual>: must have at most <max> items`: upstream's field.TooMany.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        Cause {
            kind: CauseKind::TooMany,
            field: field.into(),
            message: format!("Too many: {actual}: must have at most {max} items"),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            kind: CauseKind::NotSupported,
            field: field.into(),
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Cause {
            kind: CauseKind::Forbidden,
            field: field.into(),
            message: format!("Forbidden: {}", detail.into()),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause {
            kind: CauseKind::Duplicate,
            field: field.into(),
            message: format!("Duplicate value: {value}"),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &Value) -> Self {
        Cause {
            kind: CauseKind::NotFound,
            field: field.into(),
            message: format!("Not found: {value}"),
        }
    }

    fn reason(&self) -> &'static str {
        match self.kind {
            CauseKind::Required => "FieldValueRequired",
            CauseKind::Invalid => "FieldValueInvalid",
            CauseKind::NotSupported => "FieldValueNotSupported",
            CauseKind::Forbidden => "FieldValueForbidden",
            CauseKind::Duplicate => "FieldValueDuplicate",
            CauseKind::TooLong => "FieldValueTooLong",
            CauseKind::TooMany => "FieldValueTooMany",
            CauseKind::NotFound => "FieldValueNotFound",
            CauseKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

/// `deployments.apps` / `pods`: how upstream names a resource in messages.
pub fn qualified(res: &Resource) -> String {
    if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

fn details(res: &Resource, name: &str) -> Value {
    json!({"name": name, "group": res.group, "kind": res.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(res: &Resource, name: &str) -> Self {
        ApiError {
            details: Some(details(res, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{}\" not found", qualified(res), name),
            )
        }
    }

    pub fn already_exists(res: &Resource, name: &str) -> Self {
        ApiError {
            details: Some(details(res, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", qualified(res), name),
            )
        }
    }

    pub fn conflict(res: &Resource, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(details(res, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {}",
                    qualified(res),
                    name,
                    why
                ),
            )
        }
    }

    pub fn modified(res: &Resource, name: &str) -> Self {
        Self::conflict(res, name, "the object has been modified; please apply your changes to the latest version and try again")
    }

    /// 422 with field causes, worded like upstream: `Deployment.apps "web" is invalid: spec.replicas: …`.
    pub fn invalid(res: &Resource, name: &str, causes: Vec<Cause>) -> Self {
        Self::invalid_kind(res.group, res.kind, name, causes)
    }

    /// 422 for an object of any kind, such as request options (`PatchOptions.meta.k8s.io`).
    pub fn invalid_kind(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason(), "message": c.message, "field": c.field}))
            .collect();
        ApiError {
            details: Some(json!({"name": name, "group": group, "kind": kind, "causes": causes})),
            ..Self::new(
                422,
                "Invalid",
                format!("{qualified} \"{name}\" is invalid: {summary}"),
            )
        }
    }

    /// 409 for a server-side apply that would change fields other managers
    /// own: one `FieldManagerConflict` cause (message, field) per field.
    pub fn apply_conflict(message: String, causes: Vec<(String, String)>) -> Self {
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(message, field)| json!({"reason": "FieldManagerConflict", "message": message, "field": field}))
            .collect();
        ApiError {
            details: Some(json!({"causes": causes})),
            ..Self::new(409, "Conflict", message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// A path the server does not serve. Upstream's Status carries empty
    /// details here, and kubectl reads them (`kubectl debug` tells a
    /// missing subresource by an empty `details.name`).
    pub fn not_found_path() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct:?})"))
    }

    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "the request entity is too large: limit is 3145728",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    pub fn status_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.status_json()).unwrap_or_default();
        (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError::*;
        match e {
            Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "The resourceVersion for the provided list is too old: {requested} < {compacted}"
            )),
            FutureRevision(rev) => ApiError::timeout(format!("Too large resource version: {rev}")),
            other => ApiError::internal(other.to_string()),
        }
    }
}
