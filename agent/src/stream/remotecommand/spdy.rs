//! exec/attach over SPDY (`v4.channel.k8s.io`, kubectl's fallback when the
//! WebSocket upgrade fails): the client opens one stream per channel, named
//! by its `streamType` header (error, stdin, stdout, stderr, resize); the
//! server waits until all it expects are there, then copies. The status is
//! JSON on the error stream; FIN on each stream ends it.

use super::{Options, Output, Size, Streams};
use crate::stream::spdy::{self, Event, Session};
use bytes::Bytes;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

pub const V4: &str = "v4.channel.k8s.io";

/// How long the client has to open its streams (kubelet's default).
const STREAM_CREATION: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Ids {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Ids {
    fn count(&self) -> usize {
        [
            self.error,
            self.stdin,
            self.stdout,
            self.stderr,
            self.resize,
        ]
        .iter()
        .filter(|s| s.is_some())
        .count()
    }
}

/// Runs `session` over the upgraded connection `io`.
pub async fn serve<IO, F, Fut>(io: IO, opts: Options, session: F)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(Streams) -> Fut,
    Fut: Future<Output = Value>,
{
    let (r, w) = tokio::io::split(io);
    let mut conn = Session::new(r, w);
    let writer = conn.writer();
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(opts.tty);
    let mut ids = Ids::default();
    let mut early: Vec<Event> = Vec::new();
    let collect = async {
        while ids.count() < expected {
            match conn.next().await {
                Ok(Some(Event::Open { id, headers, .. })) => {
                    let slot = match spdy::header(&headers, "streamtype") {
                        Some("error") => &mut ids.error,
                        Some("stdin") => &mut ids.stdin,
                        Some("stdout") => &mut ids.stdout,
                        Some("stderr") => &mut ids.stderr,
                        Some("resize") => &mut ids.resize,
                        other => {
                            tracing::debug!(?other, "unexpected stream type");
                            writer.reset(id, spdy::frame::PROTOCOL_ERROR).await;
                            continue;
                        }
                    };
                    *slot = Some(id);
                    writer.reply(id).await;
                }
                Ok(Some(e)) => early.push(e),
                Ok(None) | Err(_) => return false,
            }
        }
        true
    };
    match tokio::time::timeout(STREAM_CREATION, collect).await {
        Ok(true) => {}
        _ => {
            tracing::debug!("the client did not open its streams");
            return;
        }
    }

    let (stdin_tx, stdin_rx) = match ids.stdin {
        Some(_) => {
            let (tx, rx) = mpsc::channel::<Bytes>(16);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let (resize_tx, resize_rx) = watch::channel(None::<Size>);
    let (gone_tx, gone_rx) = watch::channel(false);
    let (stdin_id, resize_id) = (ids.stdin, ids.resize);
    let reader = tokio::spawn(async move {
        let mut stdin_tx = stdin_tx;
        let mut resize_buf: Vec<u8> = Vec::new();
        let mut pending = early.into_iter();
        loop {
            let ev = match pending.next() {
                Some(e) => e,
                None => match conn.next().await {
                    Ok(Some(e)) => e,
                    Ok(None) | Err(_) => break,
                },
            };
            match ev {
                Event::Data { id, data, fin } if Some(id) == stdin_id => {
                    if let Some(tx) = &stdin_tx {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                    if fin {
                        stdin_tx = None;
                    }
                }
                Event::Reset { id } if Some(id) == stdin_id => stdin_tx = None,
                Event::Data { id, data, .. } if Some(id) == resize_id => {
                    resize_buf.extend_from_slice(&data);
                    for size in take_sizes(&mut resize_buf) {
                        let _ = resize_tx.send(Some(size));
                    }
                }
                Event::Open { id, .. } => {
                    conn.writer().reset(id, spdy::frame::REFUSED_STREAM).await;
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(true);
    });

    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let out = writer.clone();
    let (stdout_id, stderr_id) = (ids.stdout, ids.stderr);
    let forward = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let (id, data) = match o {
                Output::Stdout(d) => (stdout_id, d),
                Output::Stderr(d) => (stderr_id, d),
            };
            if let Some(id) = id {
                out.data(id, &data, false).await;
            }
        }
    });
    let status = session(Streams {
        stdin: stdin_rx,
        resize: resize_rx,
        output: out_tx,
        gone: gone_rx,
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
    for id in [ids.stdout, ids.stderr].into_iter().flatten() {
        writer.data(id, &[], true).await;
    }
    if let Some(id) = ids.error {
        writer
            .data(id, &serde_json::to_vec(&status).unwrap_or_default(), true)
            .await;
    }
    // The client closes the connection once it read the status.
    let mut reader = reader;
    if tokio::time::timeout(Duration::from_secs(2), &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
}

/// The complete JSON sizes at the front of `buf` (a stream of concatenated
/// objects); what follows the last complete one stays.
fn take_sizes(buf: &mut Vec<u8>) -> Vec<Size> {
    let mut sizes = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(s)) => {
                sizes.push(s);
                used = it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                // Not a size: skip what was read so far.
                used = buf.len();
                break;
            }
            None => {
                used = it.byte_offset();
                break;
            }
        }
    }
    buf.drain(..used);
    // A client sending garbage without end must not grow the buffer forever.
    if buf.len() > 4096 {
        buf.clear();
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_split_across_frames() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":1"#.to_vec();
        assert_eq!(
            take_sizes(&mut buf),
            vec![Size {
                width: 80,
                height: 24
            }]
        );
        buf.extend_from_slice(br#"00,"Height":30}"#);
        assert_eq!(
            take_sizes(&mut buf),
            vec![Size {
                width: 100,
                height: 30
            }]
        );
        assert!(buf.is_empty());
    }
}
