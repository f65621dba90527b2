//! `kubectl port-forward`: SPDY streams, plain (`portforward.k8s.io`) or
//! tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`). Each local
//! connection of the client opens a pair of streams sharing a `requestID`:
//! an error stream (which the client half-closes at once) and a data stream,
//! both naming the `port`. Once both are there the agent connects to that
//! port inside the pod's network namespace and copies both ways, as
//! containerd does: when one direction ends the other gets a second to
//! finish, then both streams are closed. A failure to connect is written on
//! the error stream, in kubelet's words.

use super::netns;
use super::spdy::{self, Event, Session, Writer};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub const WS_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// What the forwarder needs to know about the pod.
#[derive(Debug, Clone)]
pub struct Target {
    pub pod: String,
    pub uid: String,
    /// The pod's network namespace; `None` for hostNetwork pods.
    pub netns: Option<PathBuf>,
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, u16, mpsc::Receiver<Option<Bytes>>)>,
}

/// Serves one port-forward connection until the client leaves.
pub async fn serve<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let mut session = Session::new(r, w);
    let writer = session.writer();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inbound: HashMap<u32, mpsc::Sender<Option<Bytes>>> = HashMap::new();
    loop {
        let ev = match session.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward connection");
                break;
            }
        };
        match ev {
            Event::Open { id, headers, .. } => {
                let (kind, port) = match check_stream(&headers) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(error = %e, "port-forward stream refused");
                        writer.reset(id, spdy::frame::PROTOCOL_ERROR).await;
                        continue;
                    }
                };
                let request = spdy::header(&headers, "requestid")
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        // Old clients: error and data streams are consecutive odd ids.
                        match kind {
                            Kind::Error => id.to_string(),
                            Kind::Data => id.saturating_sub(2).to_string(),
                        }
                    });
                writer.reply(id).await;
                let pair = pairs.entry(request.clone()).or_default();
                match kind {
                    Kind::Error if pair.error.is_none() => pair.error = Some(id),
                    Kind::Data if pair.data.is_none() => {
                        let (tx, rx) = mpsc::channel(64);
                        inbound.insert(id, tx);
                        pair.data = Some((id, port, rx));
                    }
                    _ => {
                        writer.reset(id, spdy::frame::PROTOCOL_ERROR).await;
                        continue;
                    }
                }
                if pair.error.is_some() && pair.data.is_some() {
                    if let Some(Pair {
                        error: Some(error),
                        data: Some((data, port, rx)),
                    }) = pairs.remove(&request)
                    {
                        tokio::spawn(forward(
                            port,
                            data,
                            error,
                            rx,
                            writer.clone(),
                            target.clone(),
                        ));
                    }
                }
            }
            Event::Data { id, data, fin } => {
                if let Some(tx) = inbound.get(&id) {
                    if !data.is_empty() && tx.send(Some(data)).await.is_err() {
                        inbound.remove(&id);
                        continue;
                    }
                    if fin {
                        let _ = tx.send(None).await;
                        inbound.remove(&id);
                    }
                }
            }
            Event::Reset { id } => {
                inbound.remove(&id);
            }
        }
    }
    session.goaway().await;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Error,
    Data,
}

/// The stream's type and port, as kubelet checks them.
fn check_stream(headers: &[(String, String)]) -> Result<(Kind, u16), String> {
    let port = spdy::header(headers, "port").ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    let kind = match spdy::header(headers, "streamtype") {
        Some("error") => Kind::Error,
        Some("data") => Kind::Data,
        Some(other) => return Err(format!("invalid stream type {other:?}")),
        None => return Err("\"streamType\" header is required".into()),
    };
    Ok((kind, port))
}

async fn forward(
    port: u16,
    data: u32,
    error: u32,
    mut inbound: mpsc::Receiver<Option<Bytes>>,
    writer: Writer,
    target: Target,
) {
    let conn = match netns::connect(target.netns.clone(), port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {}, uid {}: failed to connect to localhost:{port} inside namespace of pod: {e}",
                target.pod, target.uid
            );
            tracing::debug!("{msg}");
            writer.data(error, msg.as_bytes(), true).await;
            writer.data(data, &[], true).await;
            return;
        }
    };
    let (mut from, mut to) = conn.into_split();
    let to_pod = async move {
        while let Some(Some(b)) = inbound.recv().await {
            if to.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    let out = writer.clone();
    let from_pod = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.data(data, &buf[..n], false).await;
                    if out.is_closed() {
                        return;
                    }
                }
            }
        }
        out.data(data, &[], true).await;
    };
    tokio::pin!(to_pod, from_pod);
    let fin_sent = tokio::select! {
        _ = &mut to_pod => {
            tokio::time::timeout(Duration::from_secs(1), &mut from_pod).await.is_ok()
        }
        _ = &mut from_pod => {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut to_pod).await;
            true
        }
    };
    if !fin_sent {
        writer.data(data, &[], true).await;
    }
    writer.data(error, &[], true).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn streams_are_checked_as_kubelet_does() {
        assert_eq!(
            check_stream(&h(&[("streamtype", "data"), ("port", "80")])),
            Ok((Kind::Data, 80))
        );
        assert!(check_stream(&h(&[("streamtype", "data")])).is_err());
        assert!(check_stream(&h(&[("streamtype", "data"), ("port", "0")])).is_err());
        assert!(check_stream(&h(&[("streamtype", "x"), ("port", "80")])).is_err());
    }
}
