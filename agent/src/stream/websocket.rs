//! RFC 6455 WebSockets, server side, as small as kubectl needs: the
//! handshake answer (`Sec-WebSocket-Accept`, subprotocol choice) and the
//! framing over any byte stream. Client frames arrive masked, ours go out
//! unmasked; fragmented messages are joined; pings are answered by whoever
//! reads them (see [`Incoming::Ping`]).

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message accepted from a client.
const MAX_MESSAGE: usize = 16 << 20;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// Close code for a normal end.
pub const CLOSE_NORMAL: u16 = 1000;

/// Whether the request asks to upgrade to a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: &str, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has("upgrade", "websocket") && has("connection", "upgrade")
}

/// The subprotocols the client offers, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{GUID}", key.trim()).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// One frame as written on the wire by a server (unmasked).
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// The payload of a close frame.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// What a read from the client yields.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A whole data message (text or binary).
    Message {
        binary: bool,
        data: Vec<u8>,
    },
    Ping(Vec<u8>),
    Pong,
    /// The client closes; its code, if it gave one.
    Close(Option<u16>),
}

/// Reads frames from the client and joins fragmented messages.
pub struct Reader<R> {
    inner: R,
    partial: Option<(bool, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            partial: None,
        }
    }

    /// The next message or control frame; `None` when the connection ended
    /// without a close frame.
    pub async fn next(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            let mut head = [0u8; 2];
            match self.inner.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.inner.read_exact(&mut b).await?;
                    u16::from_be_bytes(b) as u64
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.inner.read_exact(&mut b).await?;
                    u64::from_be_bytes(b)
                }
                n => n as u64,
            };
            let held = self.partial.as_ref().map_or(0, |(_, d)| d.len());
            if len as usize > MAX_MESSAGE || held + len as usize > MAX_MESSAGE {
                return Err(invalid("message too large"));
            }
            let mut mask = [0u8; 4];
            if masked {
                self.inner.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; len as usize];
            self.inner.read_exact(&mut payload).await?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                OP_PING => return Ok(Some(Incoming::Ping(payload))),
                OP_PONG => return Ok(Some(Incoming::Pong)),
                OP_CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Some(Incoming::Close(code)));
                }
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err(invalid("a new message began inside a fragmented one"));
                    }
                    let binary = opcode == OP_BINARY;
                    if fin {
                        return Ok(Some(Incoming::Message {
                            binary,
                            data: payload,
                        }));
                    }
                    self.partial = Some((binary, payload));
                }
                OP_CONTINUATION => {
                    let Some((binary, mut data)) = self.partial.take() else {
                        return Err(invalid("a continuation frame without a message"));
                    };
                    data.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(Incoming::Message { binary, data }));
                    }
                    self.partial = Some((binary, data));
                }
                other => return Err(invalid(&format!("unknown opcode {other:#x}"))),
            }
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("websocket: {what}"))
}

/// A frame to send, as queued for the writer task.
#[derive(Debug)]
pub struct Outgoing {
    pub opcode: u8,
    pub payload: Bytes,
}

impl Outgoing {
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Outgoing {
            opcode: OP_BINARY,
            payload: payload.into(),
        }
    }

    pub fn close(code: u16) -> Self {
        Outgoing {
            opcode: OP_CLOSE,
            payload: close_payload(code, "").into(),
        }
    }

    pub fn pong(payload: Vec<u8>) -> Self {
        Outgoing {
            opcode: OP_PONG,
            payload: payload.into(),
        }
    }
}

/// Writes queued frames in order until the queue closes or a close frame
/// went out, then shuts the write side down.
pub async fn write_frames<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(f) = rx.recv().await {
        if w.write_all(&encode(f.opcode, &f.payload)).await.is_err() {
            return;
        }
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
        if f.opcode == OP_CLOSE {
            break;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![first, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn joins_fragments_and_sees_control_frames() {
        let mut wire = masked(OP_BINARY, b"\x00he");
        wire.extend(masked(OP_PING, b"p"));
        wire.extend(masked(0x80 | OP_CONTINUATION, b"llo"));
        wire.extend(masked(0x80 | OP_CLOSE, &close_payload(1000, "")));
        let mut r = Reader::new(&wire[..]);
        assert_eq!(r.next().await.unwrap(), Some(Incoming::Ping(b"p".to_vec())));
        assert_eq!(
            r.next().await.unwrap(),
            Some(Incoming::Message {
                binary: true,
                data: b"\x00hello".to_vec()
            })
        );
        assert_eq!(r.next().await.unwrap(), Some(Incoming::Close(Some(1000))));
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[test]
    fn encodes_lengths() {
        assert_eq!(encode(OP_BINARY, b"ab"), vec![0x82, 2, b'a', b'b']);
        let long = encode(OP_BINARY, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x82, 126, 1, 44]);
        let huge = encode(OP_BINARY, &vec![0u8; 70000]);
        assert_eq!(&huge[..2], &[0x82, 127]);
    }
}
