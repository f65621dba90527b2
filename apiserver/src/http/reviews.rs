//! Access reviews (authorization.k8s.io), SelfSubjectReview and
//! TokenReview (authentication.k8s.io): answered from the caller's
//! identity (or the one a SubjectAccessReview names or a TokenReview's
//! token proves), the authenticator and the authorizer, never stored.

use super::output;
use super::request::{self, Target};
use super::resources::Call;
use crate::auth::User;
use crate::authz::{Attributes, Authorizer};
use crate::error::{ApiError, Cause};
use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{json, Value};

pub async fn handle(
    state: &super::AppState,
    target: &Target,
    call: &Call<'_>,
    user: Option<&User>,
) -> Result<Response, ApiError> {
    let authz = &*state.authz;
    if call.method != Method::POST || target.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let res = target.res;
    let user = user.ok_or_else(ApiError::unauthorized)?;
    let mut review = request::decode_body(&call.content_type, &call.body)?;
    if !review.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    review = crate::meta::with_type(review, &res.api_version(), res.kind);
    let status = match res.plural {
        "selfsubjectreviews" => json!({"userInfo": user_info(user)}),
        "selfsubjectaccessreviews" => access(authz, user, &review, None)?,
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let spec = &review["spec"];
            let strings = |f: &str| -> Vec<String> {
                spec[f]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(String::from))
                    .collect()
            };
            let subject = User {
                name: spec["user"].as_str().unwrap_or("").to_string(),
                uid: spec["uid"].as_str().map(String::from),
                groups: strings("groups"),
                extra: serde_json::from_value(spec["extra"].clone()).unwrap_or_default(),
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(ApiError::invalid(
                    res,
                    "",
                    vec![Cause::invalid(
                        "spec.user",
                        &Value::Null,
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            let local = (res.plural == "localsubjectaccessreviews")
                .then(|| target.namespace.as_deref().unwrap_or(""));
            access(authz, &subject, &review, local)?
        }
        "tokenreviews" => token_review(state, &review).await?,
        "selfsubjectrulesreviews" => {
            let namespace = review
                .pointer("/spec/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            rules(authz, user, namespace)
        }
        _ => return Err(ApiError::not_found_path()),
    };
    review["status"] = status;
    if let Some(m) = review.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    Ok(output::value_response(StatusCode::CREATED, &review))
}

/// The status of an access review of `spec.resourceAttributes` or
/// `spec.nonResourceAttributes` for `user`; `local` is a
/// LocalSubjectAccessReview's namespace, which the attributes must name.
fn access(
    authz: &Authorizer,
    user: &User,
    review: &Value,
    local: Option<&str>,
) -> Result<Value, ApiError> {
    let kind = review["kind"].as_str().unwrap_or("SubjectAccessReview");
    let invalid = |field: &str, value: &Value, why: &str| {
        ApiError::invalid_kind(
            "authorization.k8s.io",
            kind,
            "",
            vec![Cause::invalid(field, value, why)],
        )
    };
    let field = |attrs: &Value, f: &str| attrs[f].as_str().unwrap_or("").to_string();
    let attributes = match (
        review.pointer("/spec/resourceAttributes"),
        review.pointer("/spec/nonResourceAttributes"),
    ) {
        (Some(r), None) => Attributes {
            verb: field(r, "verb"),
            resource_request: true,
            group: field(r, "group"),
            version: field(r, "version"),
            namespace: field(r, "namespace"),
            resource: field(r, "resource"),
            subresource: field(r, "subresource"),
            name: field(r, "name"),
            path: String::new(),
        },
        (None, Some(n)) => Attributes {
            verb: field(n, "verb"),
            path: field(n, "path"),
            ..Attributes::default()
        },
        (Some(_), Some(_)) => {
            return Err(invalid(
                "spec.resourceAttributes",
                &Value::Null,
                "cannot be specified in combination with nonResourceAttributes",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "spec.resourceAttributes",
                &Value::Null,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ))
        }
    };
    if let Some(ns) = local {
        if attributes.namespace != ns {
            return Err(invalid(
                "spec.resourceAttributes.namespace",
                &json!(attributes.namespace),
                "must match metadata.namespace",
            ));
        }
    }
    Ok(match authz.decide(user, &attributes, true) {
        Ok(reason) if reason.is_empty() => json!({"allowed": true}),
        Ok(reason) => json!({"allowed": true, "reason": reason}),
        Err(reason) if reason.is_empty() => json!({"allowed": false}),
        Err(reason) => json!({"allowed": false, "reason": reason}),
    })
}

/// A SelfSubjectRulesReview's status: the rules RBAC grants the user in
/// the namespace; incomplete where roles are missing or a node asks.
fn rules(authz: &Authorizer, user: &User, namespace: &str) -> Value {
    let held = authz.rbac.rules_for(user, namespace);
    let mut errors = held.errors;
    if crate::authz::is_node(user) {
        errors.insert(
            0,
            "node authorizer does not support user rule resolution".into(),
        );
    }
    let resource_rules: Vec<Value> = held
        .rules
        .iter()
        .filter(|r| r.urls.is_empty())
        .map(|r| {
            let mut v = json!({"verbs": r.verbs, "apiGroups": r.groups, "resources": r.resources});
            if !r.names.is_empty() {
                v["resourceNames"] = json!(r.names);
            }
            v
        })
        .collect();
    let non_resource_rules: Vec<Value> = held
        .rules
        .iter()
        .filter(|r| !r.urls.is_empty())
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.urls}))
        .collect();
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}

/// A TokenReview's status: who the token proves its bearer to be, for the
/// audiences the review names (the API server's when it names none).
async fn token_review(state: &super::AppState, review: &Value) -> Result<Value, ApiError> {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let mut audiences: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    if audiences.is_empty() {
        audiences = vec![crate::serviceaccount_token::ISSUER.to_string()];
    }
    let proven = match state.auth.admin(token) {
        Some(admin) => Some((admin, audiences)),
        None => {
            state
                .tokens
                .authenticate(&state.registry, token, &audiences)
                .await
        }
    };
    Ok(match proven {
        Some((user, audiences)) => {
            json!({"authenticated": true, "user": user_info(&user), "audiences": audiences})
        }
        None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
    })
}

/// A user as reviews report one (upstream's UserInfo).
fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if let Some(uid) = &user.uid {
        info["uid"] = json!(uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}
