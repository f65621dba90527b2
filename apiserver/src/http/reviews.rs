//! Access reviews (authorization.k8s.io) and SelfSubjectReview
//! (authentication.k8s.io): answered from the caller's identity and the
//! authorizer, never stored. Until RBAC lands the authorizer allows every
//! authenticated user everything, so reviews say so.

use super::output;
use super::request::{self, Target};
use super::resources::Call;
use crate::auth::User;
use crate::error::ApiError;
use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{json, Value};

pub fn handle(target: &Target, call: &Call<'_>, user: Option<&User>) -> Result<Response, ApiError> {
    if call.method != Method::POST || target.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let res = target.res;
    let mut review = request::decode_body(&call.content_type, &call.body)?;
    if !review.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    review = crate::meta::with_type(review, &res.api_version(), res.kind);
    let status = match res.plural {
        "selfsubjectreviews" => {
            let user = user.ok_or_else(ApiError::unauthorized)?;
            let mut info = json!({"username": user.name, "groups": user.groups});
            if let Some(uid) = &user.uid {
                info["uid"] = json!(uid);
            }
            if !user.extra.is_empty() {
                info["extra"] = json!(user.extra);
            }
            json!({"userInfo": info})
        }
        "selfsubjectaccessreviews" | "subjectaccessreviews" | "localsubjectaccessreviews" => {
            if review.pointer("/spec/resourceAttributes").is_none()
                && review.pointer("/spec/nonResourceAttributes").is_none()
            {
                return Err(ApiError::invalid(
                    res,
                    "",
                    vec![crate::error::Cause::invalid(
                    "spec.resourceAttributes",
                    &Value::Null,
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )],
                ));
            }
            json!({"allowed": true})
        }
        "selfsubjectrulesreviews" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        _ => return Err(ApiError::not_found_path()),
    };
    review["status"] = status;
    if let Some(m) = review.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    Ok(output::value_response(StatusCode::CREATED, &review))
}
