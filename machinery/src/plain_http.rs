//! A minimal plain-HTTP/1 responder for a component's `/metrics` and
//! `/healthz` (kept on loopback or the node's address): one request per
//! connection, GET and HEAD only, the page decided by a function of the path
//! (a body that is a JSON object is served as application/json).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A page: its status line (e.g. `"200 OK"`) and body. `None` is a 404.
pub type Page = Option<(&'static str, String)>;

/// Serves `page(path)` at `addr` until the listener fails.
pub async fn serve<F>(addr: SocketAddr, page: F) -> std::io::Result<()>
where
    F: Fn(&str) -> Page + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, page).await
}

/// As [`serve`], on a listener already bound (tests use port 0).
pub fn serve_on<F>(
    listener: tokio::net::TcpListener,
    page: F,
) -> impl Future<Output = std::io::Result<()>>
where
    F: Fn(&str) -> Page + Send + Sync + 'static,
{
    let page = Arc::new(page);
    async move {
        loop {
            let (conn, _) = listener.accept().await?;
            let page = page.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), respond(conn, &*page)).await;
            });
        }
    }
}

async fn respond(
    mut conn: tokio::net::TcpStream,
    page: &(dyn Fn(&str) -> Page + Send + Sync),
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("/"),
    );
    let path = target.split('?').next().unwrap_or_default();
    let (status, body) = match method {
        "GET" | "HEAD" => {
            page(path).unwrap_or(("404 Not Found", "404 page not found\n".to_string()))
        }
        _ => ("405 Method Not Allowed", String::new()),
    };
    let content_type = if path == "/metrics" {
        "text/plain; version=0.0.4; charset=utf-8"
    } else if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    conn.write_all(&response).await?;
    conn.shutdown().await
}
