//! The agent's streaming server (kubelet's port 10250): HTTPS with client
//! certificates ([`tls`]), serving what the API server relays for
//! `kubectl logs`, `exec`, `attach`, `cp` and `port-forward`:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}` — [`logs`]
//! - `/exec/{ns}/{pod}/{container}?command=…` — [`exec`]
//! - `/attach/{ns}/{pod}/{container}` — [`attach`]
//! - `/portForward/{ns}/{pod}` — [`portforward`]
//! - `GET /stats/summary`, `GET /metrics/resource` — [`crate::stats`]
//! - `/healthz`
//!
//! The streaming endpoints speak the protocols kubectl itself speaks
//! (WebSocket channels, SPDY, SPDY tunnelled in a WebSocket), so the API
//! server relays the upgraded connection byte for byte.

pub mod attach;
pub mod exec;
pub mod logs;
pub mod lookup;
pub mod netns;
pub mod portforward;
pub mod pty;
pub mod remotecommand;
pub mod spdy;
pub mod tls;
pub mod tunnel;
pub mod upgrade;
pub mod websocket;

use crate::runtime::container::State;
use crate::runtime::{Dirs, Runtime};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use kube::{Client, ResourceExt};
use lookup::HttpError;
use remotecommand::Streams;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tls::Identity;
use upgrade::Transport;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How the server is set up (`skiff agent` flags).
#[derive(Debug, Clone)]
pub struct Options {
    pub address: IpAddr,
    pub port: u16,
    pub node_name: String,
    pub node_ip: Option<String>,
    pub data_dir: PathBuf,
    pub pod_log_dir: PathBuf,
    pub runtime: PathBuf,
    /// PEM of the CA client certificates must chain to.
    pub client_ca: String,
}

struct Ctx {
    client: Client,
    runtime: Runtime,
    node: String,
    stats: Arc<crate::stats::Stats>,
}

type Body = BoxBody<Bytes, std::io::Error>;

/// Serves until the process ends.
pub async fn run(client: Client, opts: Options) -> Result<(), StreamError> {
    let runtime = Runtime::new(
        Dirs::new(&opts.data_dir, opts.pod_log_dir.clone()),
        opts.runtime.clone(),
    )?;
    let mut names = vec![
        opts.node_name.clone(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    names.extend(opts.node_ip.clone());
    let (cert, key) = tls::serving_pair(&runtime.dirs.root.join("tls"), &opts.node_name, &names)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(
        &cert,
        &key,
        &opts.client_ca,
    )?));
    let listener = tokio::net::TcpListener::bind((opts.address, opts.port)).await?;
    tracing::info!(address = %listener.local_addr()?, "streaming server listening");
    let ctx = Arc::new(Ctx {
        client,
        stats: crate::stats::Stats::start(runtime.clone()),
        runtime,
        node: opts.node_name.clone(),
    });
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map_or(Identity::Anonymous, |c| Identity::from_certificate(c));
            let svc = hyper::service::service_fn(move |req| {
                let (ctx, identity) = (ctx.clone(), identity.clone());
                async move { Ok::<_, Infallible>(route(ctx, identity, req).await) }
            });
            // A client gets 30 s to send its request head, then it is dropped.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(message.into()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn failure(e: HttpError) -> Response<Body> {
    text(e.status, e.message)
}

async fn route(ctx: Arc<Ctx>, identity: Identity, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs == ["healthz"] {
        return text(StatusCode::OK, "ok");
    }
    match &identity {
        Identity::Anonymous => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Identity::User { name, .. } if !identity.allowed() => {
            let verb = if req.method() == Method::GET {
                "get"
            } else {
                "create"
            };
            return text(
                StatusCode::FORBIDDEN,
                format!("Forbidden (user={name}, verb={verb}, resource=nodes, subresource=proxy)"),
            );
        }
        _ => {}
    }
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    let streaming = matches!(*req.method(), Method::GET | Method::POST);
    let result = match segs.as_slice() {
        ["containerLogs", ns, pod, c] if req.method() == Method::GET => {
            logs(&ctx, ns, pod, c, &query).await
        }
        ["exec", ns, pod, c] if streaming => {
            let (ns, pod, c) = (ns.to_string(), pod.to_string(), c.to_string());
            exec(&ctx, req, &ns, &pod, &c, query).await
        }
        ["attach", ns, pod, c] if streaming => {
            let (ns, pod, c) = (ns.to_string(), pod.to_string(), c.to_string());
            attach(&ctx, req, &ns, &pod, &c, query).await
        }
        ["portForward", ns, pod] if streaming => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            port_forward(&ctx, req, &ns, &pod).await
        }
        // Resource statistics (kubelet's nodes/stats and nodes/metrics).
        ["stats", "summary"] if req.method() == Method::GET => {
            let only = query
                .iter()
                .any(|(k, v)| k == "only_cpu_and_memory" && v == "true");
            stats_summary(&ctx, only).await
        }
        ["metrics", "resource"] if req.method() == Method::GET => {
            let body = ctx.stats.resource_metrics().await;
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::stats::prometheus::CONTENT_TYPE),
            );
            Ok(r)
        }
        _ => Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "404 page not found\n",
        )),
    };
    result.unwrap_or_else(failure)
}

async fn stats_summary(ctx: &Ctx, only_cpu_and_memory: bool) -> Result<Response<Body>, HttpError> {
    let summary = ctx
        .stats
        .summary(&ctx.node, only_cpu_and_memory)
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut r = text(StatusCode::OK, summary.to_string());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn logs(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
    query: &[(String, String)],
) -> Result<Response<Body>, HttpError> {
    let opts = logs::LogOptions::from_query(query)
        .map_err(|m| HttpError::new(StatusCode::BAD_REQUEST, m))?;
    let pod = lookup::pod(&ctx.client, &ctx.node, ns, pod).await?;
    let (path, writer) = lookup::log_source(&ctx.runtime, &pod, container, opts.previous)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let runtime = ctx.runtime.clone();
    // A thread of its own, not one of the runtime's blocking pool: a follow
    // (`kubectl logs -f`) lasts as long as its client, and enough of them
    // would hold every pooled thread and stall the agent's other blocking
    // work (bundles, mounts, image files) behind them.
    std::thread::Builder::new()
        .name("container-logs".into())
        .spawn(move || {
            let live = move || {
                writer
                    .as_deref()
                    .is_some_and(|id| matches!(runtime.state(id), State::Running(_)))
            };
            logs::stream(&path, &opts, live, tx);
        })
        .map_err(|e| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("starting the log reader: {e}"),
            )
        })?;
    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(chunk)), rx))
    }));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

fn empty_upgrade(resp: Response<()>) -> Response<Body> {
    let (parts, ()) = resp.into_parts();
    Response::from_parts(
        parts,
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    )
}

async fn exec(
    ctx: &Ctx,
    mut req: Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
    query: Vec<(String, String)>,
) -> Result<Response<Body>, HttpError> {
    let bad = |m: String| HttpError::new(StatusCode::BAD_REQUEST, m);
    let opts = remotecommand::Options::from_query(&query).map_err(bad)?;
    let argv: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if argv.is_empty() {
        return Err(bad(
            "you must specify at least one command for the container".into(),
        ));
    }
    let pod = lookup::pod(&ctx.client, &ctx.node, ns, pod).await?;
    let meta = lookup::running_container(&ctx.runtime, &pod, container)?;
    let transport = upgrade::negotiate(
        req.headers(),
        &[remotecommand::websocket::V5, remotecommand::websocket::V4],
        &[remotecommand::spdy::V4],
    )?;
    let runtime = ctx.runtime.clone();
    tracing::info!(pod = %pod.name_any(), container, command = ?argv, "exec");
    let session = move |streams: Streams| async move {
        exec::run(&runtime, &meta.id, argv, opts, streams).await
    };
    let resp = upgrade::switch(&mut req, transport, move |io| {
        remote_command(io, transport, opts, session)
    })?;
    Ok(empty_upgrade(resp))
}

async fn attach(
    ctx: &Ctx,
    mut req: Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
    query: Vec<(String, String)>,
) -> Result<Response<Body>, HttpError> {
    let opts = remotecommand::Options::from_query(&query)
        .map_err(|m| HttpError::new(StatusCode::BAD_REQUEST, m))?;
    let pod = lookup::pod(&ctx.client, &ctx.node, ns, pod).await?;
    let meta = lookup::running_container(&ctx.runtime, &pod, container)?;
    let transport = upgrade::negotiate(
        req.headers(),
        &[remotecommand::websocket::V5, remotecommand::websocket::V4],
        &[remotecommand::spdy::V4],
    )?;
    let runtime = ctx.runtime.clone();
    let session =
        move |streams: Streams| async move { attach::run(&runtime, &meta.id, opts, streams).await };
    let resp = upgrade::switch(&mut req, transport, move |io| {
        remote_command(io, transport, opts, session)
    })?;
    Ok(empty_upgrade(resp))
}

async fn remote_command<IO, F, Fut>(
    io: IO,
    transport: Transport,
    opts: remotecommand::Options,
    session: F,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: FnOnce(Streams) -> Fut,
    Fut: std::future::Future<Output = serde_json::Value>,
{
    match transport {
        Transport::WebSocket(p) => remotecommand::websocket::serve(io, p, opts, session).await,
        Transport::Spdy(_) => remotecommand::spdy::serve(io, opts, session).await,
    }
}

async fn port_forward(
    ctx: &Ctx,
    mut req: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Result<Response<Body>, HttpError> {
    let pod = lookup::pod(&ctx.client, &ctx.node, ns, pod).await?;
    let transport = upgrade::negotiate(
        req.headers(),
        &[portforward::WS_PROTOCOL],
        &[portforward::SPDY_PROTOCOL],
    )?;
    let target = portforward::Target {
        pod: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        netns: lookup::netns(&ctx.runtime, &pod),
    };
    let resp = upgrade::switch(&mut req, transport, move |io| async move {
        match transport {
            Transport::WebSocket(_) => portforward::serve(tunnel::over_websocket(io), target).await,
            Transport::Spdy(_) => portforward::serve(io, target).await,
        }
    })?;
    Ok(empty_upgrade(resp))
}
