//! A byte stream carried in WebSocket binary messages, as kubectl tunnels
//! port-forward's SPDY (`SPDY/3.1+portforward.k8s.io`): message boundaries
//! mean nothing (a frame may span several), so the messages are poured into
//! one end of an in-memory pipe and whatever the other side writes goes
//! back as messages. Pings are answered; a close ends the stream.

use super::websocket::{self as ws, Incoming, Outgoing};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// The stream inside the WebSocket on `io`.
pub fn over_websocket<IO>(io: IO) -> DuplexStream
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (r, w) = tokio::io::split(io);
    let (wtx, wrx) = mpsc::channel::<Outgoing>(64);
    tokio::spawn(ws::write_frames(w, wrx));
    let (mut from_pipe, mut into_pipe) = tokio::io::split(ours);
    let control = wtx.clone();
    tokio::spawn(async move {
        let mut rd = ws::Reader::new(r);
        loop {
            match rd.next().await {
                Ok(Some(Incoming::Message { data, .. })) => {
                    if into_pipe.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Ok(Some(Incoming::Ping(p))) => {
                    let _ = control.send(Outgoing::pong(p)).await;
                }
                Ok(Some(Incoming::Pong)) => {}
                Ok(Some(Incoming::Close(_))) | Ok(None) | Err(_) => break,
            }
        }
        let _ = into_pipe.shutdown().await;
        let _ = control.send(Outgoing::close(ws::CLOSE_NORMAL)).await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if wtx.send(Outgoing::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = wtx.send(Outgoing::close(ws::CLOSE_NORMAL)).await;
    });
    theirs
}
