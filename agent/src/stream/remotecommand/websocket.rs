//! exec/attach over a WebSocket with kubectl's channel protocol: every
//! binary message starts with its channel (0 stdin, 1 stdout, 2 stderr,
//! 3 status, 4 resize). `v5.channel.k8s.io` adds channel 255, whose
//! message `255 <n>` closes the client's stream n (kubectl closes stdin so);
//! `v4.channel.k8s.io` has no way to end stdin but closing the connection.

use super::{Options, Output, Size, Streams};
use crate::stream::websocket::{self as ws, Incoming, Outgoing};
use bytes::Bytes;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Runs `session` over the upgraded connection `io` and ends with its status.
pub async fn serve<IO, F, Fut>(io: IO, protocol: &str, opts: Options, session: F)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(Streams) -> Fut,
    Fut: Future<Output = Value>,
{
    let v5 = protocol == V5;
    let (r, w) = tokio::io::split(io);
    let (wtx, wrx) = mpsc::channel::<Outgoing>(64);
    let writer = tokio::spawn(ws::write_frames(w, wrx));
    // As kubelet: an empty message on the lowest writable channel tells the
    // client the session is open.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        STATUS
    };
    let _ = wtx.send(Outgoing::binary(vec![first])).await;

    let (stdin_tx, stdin_rx) = match opts.stdin {
        true => {
            let (tx, rx) = mpsc::channel::<Bytes>(16);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let (resize_tx, resize_rx) = watch::channel(None::<Size>);
    let (gone_tx, gone_rx) = watch::channel(false);
    let pongs = wtx.clone();
    let reader = tokio::spawn(async move {
        let mut rd = ws::Reader::new(r);
        let mut stdin_tx = stdin_tx;
        loop {
            match rd.next().await {
                Ok(Some(Incoming::Message { data, .. })) => match data.split_first() {
                    Some((&STDIN, rest)) => {
                        if let Some(tx) = &stdin_tx {
                            if tx.send(Bytes::copy_from_slice(rest)).await.is_err() {
                                stdin_tx = None;
                            }
                        }
                    }
                    Some((&RESIZE, rest)) => {
                        if let Ok(size) = serde_json::from_slice::<Size>(rest) {
                            let _ = resize_tx.send(Some(size));
                        }
                    }
                    Some((&CLOSE, [STDIN])) if v5 => stdin_tx = None,
                    _ => {}
                },
                Ok(Some(Incoming::Ping(p))) => {
                    let _ = pongs.send(Outgoing::pong(p)).await;
                }
                Ok(Some(Incoming::Pong)) => {}
                Ok(Some(Incoming::Close(_))) | Ok(None) | Err(_) => break,
            }
        }
        let _ = gone_tx.send(true);
    });

    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let out_ws = wtx.clone();
    let forward = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let (ch, data) = match o {
                Output::Stdout(d) => (STDOUT, d),
                Output::Stderr(d) => (STDERR, d),
            };
            let mut msg = Vec::with_capacity(data.len() + 1);
            msg.push(ch);
            msg.extend_from_slice(&data);
            if out_ws.send(Outgoing::binary(msg)).await.is_err() {
                break;
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
    // Every byte of output before the status.
    let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
    let mut msg = vec![STATUS];
    msg.extend_from_slice(&serde_json::to_vec(&status).unwrap_or_default());
    let _ = wtx.send(Outgoing::binary(msg)).await;
    let _ = wtx.send(Outgoing::close(ws::CLOSE_NORMAL)).await;
    drop(wtx);
    // The client answers the close; give it a moment, then hang up.
    let mut reader = reader;
    if tokio::time::timeout(Duration::from_secs(2), &mut reader)
        .await
        .is_err()
    {
        tracing::debug!("client did not answer the websocket close");
        reader.abort();
    }
    let _ = writer.await;
}
