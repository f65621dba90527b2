//! Switching an HTTP/1.1 request to a streaming protocol: a WebSocket
//! (`Upgrade: websocket`, the subprotocol chosen from the client's
//! `Sec-WebSocket-Protocol`) or SPDY/3.1 (`Upgrade: SPDY/3.1`, the protocol
//! chosen from its `X-Stream-Protocol-Version` headers). Answers 101 and
//! hands the upgraded connection to a task once hyper lets go of it.

use super::lookup::HttpError;
use super::websocket;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;

/// The transport the client is switched to, and its protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transport {
    WebSocket(&'static str),
    Spdy(&'static str),
}

fn header_tokens(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Picks the transport; `ws` and `spdy` are the protocols we speak on each,
/// most preferred first.
pub fn negotiate(
    headers: &HeaderMap,
    ws: &[&'static str],
    spdy: &[&'static str],
) -> Result<Transport, HttpError> {
    if websocket::is_upgrade(headers) {
        let offered = websocket::offered_protocols(headers);
        return ws
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
            .map(|p| Transport::WebSocket(p))
            .ok_or_else(|| {
                HttpError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "requested protocol(s) are not supported: {offered:?}; supports {ws:?}"
                    ),
                )
            });
    }
    let upgrade = header_tokens(headers, "upgrade");
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        let offered = header_tokens(headers, "x-stream-protocol-version");
        return spdy
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
            .map(|p| Transport::Spdy(p))
            .ok_or_else(|| {
                HttpError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {spdy:?}"
                    ),
                )
            });
    }
    Err(HttpError::new(
        StatusCode::BAD_REQUEST,
        "unable to upgrade: missing upgrade headers in request",
    ))
}

/// Answers 101 for `transport` and runs `serve` on the upgraded connection.
pub fn switch<B, F, Fut>(
    req: &mut Request<B>,
    transport: Transport,
    serve: F,
) -> Result<Response<()>, HttpError>
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut resp = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    match transport {
        Transport::WebSocket(protocol) => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    HttpError::new(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key")
                })?;
            resp = resp
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("sec-websocket-accept", websocket::accept_key(key))
                .header("sec-websocket-protocol", HeaderValue::from_static(protocol));
        }
        Transport::Spdy(protocol) => {
            resp = resp
                .header("upgrade", "SPDY/3.1")
                .header("connection", "Upgrade")
                .header(
                    "x-stream-protocol-version",
                    HeaderValue::from_static(protocol),
                );
        }
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    resp.body(())
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
