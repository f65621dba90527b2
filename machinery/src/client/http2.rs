//! kube clients that speak HTTP/2 to the API server, as upstream's client-go
//! does. kube-rs's own client speaks HTTP/1.1 only, so every request in
//! flight holds a TLS connection of its own: the 1,000-node simulator and
//! the controllers' create bursts kept some 1,400 connections open on the
//! server (two TLS sessions each when both ends are in the server process).
//! Over HTTP/2 each client needs one connection.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use std::time::Duration;

/// What the server may send on one stream, and on the whole connection,
/// before the client reads it: the connection's window is many streams'
/// worth, so one watch read slowly cannot hold up every other response.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

/// A client for `config` over HTTP/2 when the server offers it (ALPN),
/// HTTP/1.1 otherwise, with the authentication and headers `config` asks for.
/// Pings find a dead connection (client-go pings every 30 s, 15 s timeout).
pub fn client(config: kube::Config) -> anyhow::Result<kube::Client> {
    let tls = config.rustls_client_config()?;
    // HTTP/2 writes a request's frames one by one: without TCP_NODELAY,
    // Nagle's algorithm holds back the next write until the last is acked.
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    let hyper = HyperClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(15))
        .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}
