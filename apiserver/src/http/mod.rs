//! The HTTP surface: authentication, then routing to discovery, OpenAPI,
//! health and metrics endpoints, the resource verbs, or the pod
//! subresources relayed to node agents (`streaming`).

pub mod duplicates;
mod health;
pub mod output;
pub mod patch;
pub mod request;
pub mod resources;
pub mod reviews;
pub mod streaming;
pub mod watch;

use crate::auth::{Authenticator, User};
use crate::error::ApiError;
use crate::registry::Registry;
use crate::{discovery, metrics::Metrics, openapi, version};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use skiff_machinery::catalog::Served;
use std::sync::Arc;
use std::time::Instant;

pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub auth: Authenticator,
    pub authz: Arc<crate::authz::Authorizer>,
    /// Service account tokens: issued by TokenRequest, accepted as users.
    pub tokens: crate::serviceaccount_token::Tokens,
    /// Connections to node agents, for pods' log/exec/attach/portforward.
    pub kubelet: crate::kubelet::KubeletClient,
    /// metrics.k8s.io, from the agents' resource metrics.
    pub metrics_api: crate::metricsapi::MetricsApi,
    /// Nodes joining with the token.
    pub join: crate::join::Join,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Serves one request; the connection's client certificate identity (if any)
/// comes in as an extension set by the listener.
pub async fn serve(state: Arc<AppState>, req: Request<hyper::body::Incoming>) -> Response {
    let started = Instant::now();
    let cert_user = req.extensions().get::<User>().cloned();
    let req = match state.join.serve(req, cert_user.as_ref()).await {
        Ok(resp) => return resp,
        Err(req) => req,
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let user = match state
        .auth
        .authenticate(req.extensions().get::<User>(), req.headers())
    {
        Some(user) => Some(user),
        None => service_account(&state, req.headers()).await,
    };
    let (verb, resource, resp) = match user {
        None => ("", String::new(), ApiError::unauthorized().into_response()),
        Some(user) => {
            let acting =
                crate::authz::impersonation::acting_user(&state.authz, user, req.headers());
            let allowed = acting.and_then(|user| {
                state
                    .authz
                    .check_request(&user, &method, &path, req.uri().query())?;
                Ok(user)
            });
            match allowed {
                Ok(user) => route(&state, req, user).await,
                Err(e) => {
                    tracing::debug!(target: "skiff::forbidden", message = %e.message);
                    ("", String::new(), e.into_response())
                }
            }
        }
    };
    let code = resp.status().as_u16();
    if !resource.is_empty() {
        state
            .metrics
            .observe(verb, &resource, code, started.elapsed());
    }
    tracing::debug!(%method, %path, code, took_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

/// The service account whose valid token the request bears.
async fn service_account(state: &AppState, headers: &HeaderMap) -> Option<User> {
    let token = crate::auth::bearer(headers)?;
    let api = [crate::serviceaccount_token::ISSUER.to_string()];
    let (user, _) = state
        .tokens
        .authenticate(&state.registry, token, &api)
        .await?;
    Some(user)
}

/// POST `serviceaccounts/<name>/token`: a TokenRequest answered with a new token.
async fn token_request(
    state: &AppState,
    ns: &str,
    name: &str,
    call: &resources::Call<'_>,
) -> Response {
    let served = async {
        let body = request::decode_body(&call.content_type, &call.body)?;
        if let Some(user) = &call.user {
            let attributes = crate::authz::Attributes::of_request(call.method, call.path, None);
            state
                .authz
                .admit_node_request(user, &attributes, Some(&body))?;
        }
        state.tokens.request(&state.registry, ns, name, &body).await
    };
    match served.await {
        Ok(v) => output::value_response(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}

fn json_ok(v: &serde_json::Value) -> Response {
    output::value_response(StatusCode::OK, v)
}

async fn route(
    state: &Arc<AppState>,
    req: Request<hyper::body::Incoming>,
    user: User,
) -> (&'static str, String, Response) {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let accept = header(&parts.headers, "accept").map(String::from);
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let simple = |r: Response| ("", String::new(), r);
    match (parts.method.clone(), segs.as_slice()) {
        (Method::GET, ["version"]) => simple(json_ok(&version::info())),
        (Method::GET, [endpoint @ ("healthz" | "livez" | "readyz"), rest @ ..])
            if rest.len() <= 1 =>
        {
            let query = request::Query::parse(parts.uri.query()).unwrap_or_default();
            simple(health::respond(&state.registry, endpoint, rest.first().copied(), &query).await)
        }
        (Method::GET, ["metrics"]) => simple(
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                state.metrics.render() + &state.registry.cache_metrics(),
            )
                .into_response(),
        ),
        (Method::GET, ["api"]) => simple(match discovery::wants_aggregated(accept.as_deref()) {
            Some(ct) => aggregated(&state.registry.served(), true, ct),
            None => json_ok(&discovery::legacy_api_versions()),
        }),
        (Method::GET, ["apis"]) => simple(match discovery::wants_aggregated(accept.as_deref()) {
            Some(ct) => aggregated(&state.registry.served(), false, ct),
            None => json_ok(&discovery::group_list(&state.registry.served())),
        }),
        (Method::GET, ["api", v]) => simple(
            discovery::resource_list(&state.registry.served(), "", v).map_or_else(
                || ApiError::not_found_path().into_response(),
                |d| json_ok(&d),
            ),
        ),
        (Method::GET, ["apis", g]) => {
            simple(discovery::group(&state.registry.served(), g).map_or_else(
                || ApiError::not_found_path().into_response(),
                |d| json_ok(&d),
            ))
        }
        (Method::GET, ["apis", g, v]) => simple(
            discovery::resource_list(&state.registry.served(), g, v).map_or_else(
                || ApiError::not_found_path().into_response(),
                |d| json_ok(&d),
            ),
        ),
        (Method::GET, ["openapi", "v3"]) => {
            simple(json_ok(&openapi::root(&state.registry.served())))
        }
        (Method::GET, ["openapi", "v3", "api", v]) => simple(openapi_doc(&state.registry, "", v)),
        (Method::GET, ["openapi", "v3", "apis", g, v]) => {
            simple(openapi_doc(&state.registry, g, v))
        }
        (
            _,
            ["api", "v1", "namespaces", ns, "pods", name, sub @ ("log" | "exec" | "attach" | "portforward")],
        ) => {
            let (ns, name, sub) = (ns.to_string(), name.to_string(), sub.to_string());
            let verb = if sub == "log" { "GET" } else { "CONNECT" };
            let req = Request::from_parts(parts, body);
            let resp = streaming::handle(state, req, &ns, &name, &sub).await;
            (verb, "pods".to_string(), resp)
        }
        (_, ["api" | "apis", ..]) => {
            // Read at most one byte past the limit, so an oversized body costs nothing more.
            let body = match http_body_util::Limited::new(body, request::MAX_BODY + 1)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return simple(ApiError::too_large().into_response())
                }
                Err(e) => {
                    return simple(
                        ApiError::bad_request(format!("reading the request body: {e}"))
                            .into_response(),
                    )
                }
            };
            let query = match request::Query::parse(parts.uri.query()) {
                Ok(q) => q,
                Err(e) => return simple(e.into_response()),
            };
            let target = request::parse_path(&path, &state.registry.served()).ok();
            let verb = verb_of(&parts.method, target.as_ref(), &query);
            // TokenRequest needs the token issuer, which the resource handler has not.
            let token_for = target
                .as_ref()
                .and_then(|t| match (&t.namespace, &t.name, t.sub) {
                    (Some(ns), Some(name), Some(skiff_machinery::catalog::Subresource::Token))
                        if parts.method == Method::POST =>
                    {
                        Some((ns.clone(), name.clone()))
                    }
                    _ => None,
                });
            let review = target.clone().filter(|t| !t.res.stored);
            let resource = target.map(|t| t.res.plural.to_string()).unwrap_or_default();
            let call = resources::Call {
                method: &parts.method,
                path: &path,
                query,
                content_type: request::media_type(header(&parts.headers, "content-type")),
                accept,
                user_agent: header(&parts.headers, "user-agent").map(String::from),
                admit: crate::authz::admission(&state.authz, &parts.method, &user),
                user: Some(user),
                body,
            };
            let resp = if crate::metricsapi::MetricsApi::serves(&path) {
                state.metrics_api.handle(&call).await
            } else if let Some(review) = review {
                reviews::handle(state, &review, &call, call.user.as_ref())
                    .await
                    .unwrap_or_else(IntoResponse::into_response)
            } else if let Some((ns, name)) = token_for {
                token_request(state, &ns, &name, &call).await
            } else {
                resources::handle(state.registry.clone(), call).await
            };
            (verb, resource, resp)
        }
        _ => simple(ApiError::not_found_path().into_response()),
    }
}

/// The verb as upstream's metrics name it (a collection GET is LIST, and so on).
fn verb_of(method: &Method, target: Option<&request::Target>, q: &request::Query) -> &'static str {
    let collection = target.is_some_and(|t| t.name.is_none());
    match *method {
        Method::GET if q.flag("watch") => "WATCH",
        Method::GET if collection => "LIST",
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE if collection => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

fn aggregated(served: &Served, legacy: bool, content_type: &'static str) -> Response {
    let api_version = if content_type.contains("v2beta1") {
        "apidiscovery.k8s.io/v2beta1"
    } else {
        "apidiscovery.k8s.io/v2"
    };
    let body =
        serde_json::to_vec(&discovery::aggregated(served, legacy, api_version)).unwrap_or_default();
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

fn openapi_doc(reg: &Registry, group: &str, version: &str) -> Response {
    match openapi::document(reg, group, version) {
        Some(doc) => (
            StatusCode::OK,
            [
                (http::header::CONTENT_TYPE, "application/json"),
                (http::header::CACHE_CONTROL, "public, immutable"),
            ],
            Body::from(doc),
        )
            .into_response(),
        None => ApiError::not_found_path().into_response(),
    }
}
