//! The pod subresources served by the pod's node agent: `log`, `exec`,
//! `attach` and `portforward`. The request is checked as upstream checks it
//! (the pod exists, the container is valid, the pod has a node, the log
//! options are sane), then relayed to the agent's streaming port
//! (`https://<node InternalIP>:<kubeletEndpoint port>/…`) with the API
//! server's kubelet client certificate. Logs come back as a streamed body;
//! an upgrade (WebSocket or SPDY) is relayed byte for byte once the agent
//! switched protocols, as upstream's UpgradeAwareProxy does. The agent's
//! plain-text log errors become `Status` errors as upstream words them.

use super::request::Query;
use super::AppState;
use crate::error::{ApiError, Cause};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use skiff_machinery::catalog;

/// Headers of an upgrade request the agent needs, and of its answer the client needs.
const UPGRADE_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];
const ANSWER_HEADERS: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Serves `pods/{sub}` for pod `name` in `ns`.
pub async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    sub: &str,
) -> Response {
    match serve(state, req, ns, name, sub).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    state: &AppState,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    sub: &str,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let allowed = match sub {
        "log" => method == Method::GET,
        _ => method == Method::GET || method == Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed());
    }
    let query = Query::parse(req.uri().query())?;
    let pods = catalog::lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("no pods in the catalog"))?;
    let pod = state.registry.get(pods, Some(ns), name).await?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match sub {
        "log" => {
            let container = valid_container(&pod, name, query.get("container"))?;
            let params = log_params(name, &query)?;
            if node.is_empty() {
                // As upstream: no node yet, no logs, no error.
                return Ok(plain(StatusCode::OK, Body::empty()));
            }
            let path = format!("/containerLogs/{ns}/{name}/{container}{params}");
            logs(state, &node, &path, name).await
        }
        "exec" | "attach" => {
            let container = valid_container(&pod, name, query.get("container"))?;
            let params = stream_params(sub, &query)?;
            if node.is_empty() {
                return Err(no_host(name));
            }
            let path = format!("/{sub}/{ns}/{name}/{container}{params}");
            relay_upgrade(state, req, &node, &path).await
        }
        "portforward" => {
            if node.is_empty() {
                return Err(no_host(name));
            }
            let params = match query.get("ports").filter(|p| !p.is_empty()) {
                Some(p) => format!("?{}", encode(&[("port", p.to_string())])),
                None => String::new(),
            };
            let path = format!("/portForward/{ns}/{name}{params}");
            relay_upgrade(state, req, &node, &path).await
        }
        _ => Err(ApiError::not_found_path()),
    }
}

fn no_host(name: &str) -> ApiError {
    ApiError::bad_request(format!("pod {name} does not have a host assigned"))
}

fn encode(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn plain(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// The names of the pod's containers, init containers first, as upstream visits them.
fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod["spec"][k].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The container a request means: the one named, or the pod's only one.
fn valid_container(pod: &Value, name: &str, wanted: Option<&str>) -> Result<String, ApiError> {
    match wanted.filter(|c| !c.is_empty()) {
        Some(c) if container_names(pod).iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main = pod["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match main.as_slice() {
                [only] => Ok(only["name"].as_str().unwrap_or("").to_string()),
                [] => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(pod).join(" ")
                ))),
            }
        }
    }
}

/// A query boolean as Go's strconv.ParseBool reads it.
fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// PodLogOptions from the query, checked as upstream validates them, as
/// kubelet's query string.
fn log_params(name: &str, q: &Query) -> Result<String, ApiError> {
    let mut causes = Vec::new();
    let mut out: Vec<(&str, String)> = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if truthy(q.get(flag)) {
            out.push((flag, "true".into()));
        }
    }
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("{k}: invalid value {v:?}: not an integer"))
                })
            })
            .transpose()
    };
    let since_seconds = int("sinceSeconds")?;
    let since_time = q.get("sinceTime").filter(|s| !s.is_empty());
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => causes.push(Cause::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(n), None) if n < 1 => causes.push(Cause::invalid(
            "sinceSeconds",
            &json!(n),
            "must be greater than 0",
        )),
        (Some(n), None) => out.push(("sinceSeconds", n.to_string())),
        (None, Some(t)) => {
            let parsed = t.parse::<jiff::Timestamp>().map_err(|e| {
                ApiError::bad_request(format!("sinceTime: invalid time {t:?}: {e}"))
            })?;
            out.push((
                "sinceTime",
                parsed.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ));
        }
        (None, None) => {}
    }
    if let Some(n) = int("tailLines")? {
        if n < 0 {
            causes.push(Cause::invalid(
                "tailLines",
                &json!(n),
                "must be greater than or equal to 0",
            ));
        } else {
            out.push(("tailLines", n.to_string()));
        }
    }
    if let Some(n) = int("limitBytes")? {
        if n < 1 {
            causes.push(Cause::invalid(
                "limitBytes",
                &json!(n),
                "must be greater than 0",
            ));
        } else {
            out.push(("limitBytes", n.to_string()));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_kind("", "PodLogOptions", name, causes));
    }
    Ok(if out.is_empty() {
        String::new()
    } else {
        format!("?{}", encode(&out))
    })
}

/// PodExecOptions/PodAttachOptions as kubelet's query (`stdin=1`, `command=…`).
fn stream_params(sub: &str, q: &Query) -> Result<String, ApiError> {
    let mut out: Vec<(&str, String)> = Vec::new();
    let mut any = false;
    for flag in ["stdin", "stdout", "stderr", "tty"] {
        if truthy(q.get(flag)) {
            out.push((flag, "1".into()));
            any |= flag != "tty";
        }
    }
    if !any {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if sub == "exec" {
        let command: Vec<&String> = q
            .all
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v)
            .collect();
        if command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        out.extend(command.into_iter().map(|c| ("command", c.clone())));
    }
    Ok(format!("?{}", encode(&out)))
}

/// The node's address and the port of its agent.
async fn node_address(state: &AppState, node: &str) -> Result<(String, u16), ApiError> {
    let nodes = catalog::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("no nodes in the catalog"))?;
    let n = state.registry.get(nodes, None, node).await?;
    let addresses = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addresses
                .iter()
                .find(|a| a["type"] == *t)
                .and_then(|a| a["address"].as_str())
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| ApiError::internal(format!("node {node:?} reports no address")))?;
    let port = n
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .unwrap_or(10250) as u16;
    Ok((host.to_string(), port))
}

fn backend_request(
    method: &Method,
    host: &str,
    port: u16,
    path: &str,
    headers: Option<&HeaderMap>,
) -> Result<Request<Empty<Bytes>>, ApiError> {
    let mut b = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, format!("{host}:{port}"));
    if let Some(h) = headers {
        for name in UPGRADE_HEADERS {
            for v in h.get_all(name) {
                b = b.header(name, v.clone());
            }
        }
    }
    b.body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// As upstream reports a node it cannot reach: a 500 with no reason
/// (kubectl prints `Error from server: Get "https://…": dial tcp …`).
fn dial_error(e: crate::kubelet::KubeletError, path: &str, host: &str, port: u16) -> ApiError {
    ApiError::new(500, "", format!("Get \"https://{host}:{port}{path}\": {e}"))
}

async fn logs(state: &AppState, node: &str, path: &str, name: &str) -> Result<Response, ApiError> {
    let (host, port) = node_address(state, node).await?;
    let req = backend_request(&Method::GET, &host, port, path, None)?;
    let resp = state
        .kubelet
        .send(&host, port, req)
        .await
        .map_err(|e| dial_error(e, path, &host, port))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(plain(StatusCode::OK, Body::new(resp.into_body())));
    }
    let body = read_limited(resp.into_body()).await;
    let text = String::from_utf8_lossy(&body).trim().to_string();
    Err(match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request(text),
        StatusCode::NOT_FOUND => ApiError {
            details: Some(json!({"name": name, "kind": "pods/log"})),
            ..ApiError::new(404, "NotFound", text)
        },
        StatusCode::INTERNAL_SERVER_ERROR => ApiError::internal(text),
        other => ApiError::new(other.as_u16(), "InternalError", text),
    })
}

async fn read_limited(body: Incoming) -> Vec<u8> {
    match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Relays an upgrade: the agent's answer goes back to the client; after a
/// 101 both connections are joined until either side ends.
async fn relay_upgrade(
    state: &AppState,
    mut req: Request<Incoming>,
    node: &str,
    path: &str,
) -> Result<Response, ApiError> {
    let upgrading = req.headers().contains_key(http::header::UPGRADE);
    if !upgrading {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let (host, port) = node_address(state, node).await?;
    let backend = backend_request(req.method(), &host, port, path, Some(req.headers()))?;
    let mut resp = state
        .kubelet
        .send(&host, port, backend)
        .await
        .map_err(|e| dial_error(e, path, &host, port))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_limited(resp.into_body()).await;
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, ct.clone());
        }
        return Ok(r);
    }
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in ANSWER_HEADERS {
        for v in resp.headers().get_all(name) {
            answer.headers_mut().append(name, v.clone());
        }
    }
    let client = hyper::upgrade::on(&mut req);
    let agent = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, agent) = match tokio::join!(client, agent) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::debug!(client = ?c.err(), agent = ?a.err(), "upgrade relay failed");
                return;
            }
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
            tracing::debug!(error = %e, "upgrade relay ended");
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s)).unwrap()
    }

    #[test]
    fn containers_are_chosen_as_upstream() {
        let pod = json!({"spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(valid_container(&pod, "p", Some("init")).unwrap(), "init");
        assert_eq!(
            valid_container(&pod, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(
            valid_container(&pod, "p", Some("x")).unwrap_err().message,
            "container x is not valid for pod p"
        );
        let one = json!({"spec": {"containers": [{"name": "main"}]}});
        assert_eq!(valid_container(&one, "p", None).unwrap(), "main");
    }

    #[test]
    fn log_options_pass_or_fail_as_upstream() {
        assert_eq!(
            log_params("p", &q("container=c&follow=true&tailLines=10&timestamps=true&sinceSeconds=3600&previous=true")).unwrap(),
            "?follow=true&previous=true&timestamps=true&sinceSeconds=3600&tailLines=10"
        );
        let e = log_params("p", &q("tailLines=-1")).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(log_params("p", &q("sinceSeconds=1&sinceTime=2024-01-01T00:00:00Z")).is_err());
        assert_eq!(log_params("p", &q("")).unwrap(), "");
    }

    #[test]
    fn exec_params_as_kubelet_reads_them() {
        assert_eq!(
            stream_params(
                "exec",
                &q("command=sh&command=-c&command=echo+hi&stdout=true&stderr=true")
            )
            .unwrap(),
            "?stdout=1&stderr=1&command=sh&command=-c&command=echo+hi"
        );
        assert!(stream_params("exec", &q("stdout=true")).is_err());
        assert!(stream_params("attach", &q("tty=true")).is_err());
    }
}
