//! SPDY/3.1, the server half kubectl's port-forward and its fallback for
//! exec/attach need: the client opens every stream (SYN_STREAM with
//! headers), the server accepts it with SYN_REPLY and then both send DATA
//! until each side sets FIN. A [`Session`] reads frames and reports stream
//! events; its cloneable [`Writer`] sends frames through one writer task so
//! header compression and frame order stay consistent. No flow control:
//! kubectl's SPDY library neither sends nor honours WINDOW_UPDATE.

pub mod dictionary;
pub mod frame;
pub mod zlib;

use bytes::Bytes;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

/// Largest DATA payload we send in one frame.
const MAX_DATA: usize = 32 * 1024;

/// What the peer did.
#[derive(Debug)]
pub enum Event {
    /// A new stream with its headers (names lowercased).
    Open {
        id: u32,
        headers: Vec<(String, String)>,
        fin: bool,
    },
    Data {
        id: u32,
        data: Bytes,
        fin: bool,
    },
    Reset {
        id: u32,
    },
}

/// The value of header `name` (lowercase) in a stream's headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads the peer's frames.
pub struct Session<R> {
    reader: R,
    inflater: zlib::Inflater,
    writer: Writer,
    last_stream: u32,
}

impl<R: AsyncRead + Unpin> Session<R> {
    /// A session over `reader` and `writer` (the two halves of one
    /// connection); the writer half is driven by a task of its own.
    pub fn new<W: AsyncWrite + Unpin + Send + 'static>(reader: R, writer: W) -> Self {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(write_loop(writer, rx));
        Session {
            reader,
            inflater: zlib::Inflater::new(),
            writer: Writer {
                tx,
                deflater: Arc::new(Mutex::new(zlib::Deflater::new())),
            },
            last_stream: 0,
        }
    }

    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }

    /// The next stream event; `None` when the peer went away (GOAWAY or
    /// the connection ended). PINGs are answered here.
    pub async fn next(&mut self) -> io::Result<Option<Event>> {
        loop {
            let Some(f) = frame::read(&mut self.reader).await? else {
                return Ok(None);
            };
            match f {
                frame::Frame::SynStream { id, fin, headers } => {
                    let block = self.inflater.inflate(&headers)?;
                    let headers = frame::parse_header_block(&block)?;
                    self.last_stream = self.last_stream.max(id);
                    return Ok(Some(Event::Open { id, headers, fin }));
                }
                frame::Frame::Data { id, fin, data } => {
                    return Ok(Some(Event::Data {
                        id,
                        data: data.into(),
                        fin,
                    }))
                }
                frame::Frame::RstStream { id, .. } => return Ok(Some(Event::Reset { id })),
                frame::Frame::Ping(id) => self.writer.send(frame::ping(id)).await,
                frame::Frame::GoAway => return Ok(None),
                frame::Frame::Other { headers, .. } => {
                    // Keep the decompression context in step with the peer's.
                    if let Some(h) = headers.filter(|h| !h.is_empty()) {
                        self.inflater.inflate(&h)?;
                    }
                }
            }
        }
    }

    /// Says goodbye (GOAWAY naming the last stream seen).
    pub async fn goaway(&mut self) {
        let w = self.writer.clone();
        w.send(frame::goaway(self.last_stream)).await;
    }
}

/// Sends frames; cheap to clone, one per task that writes.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Vec<u8>>,
    deflater: Arc<Mutex<zlib::Deflater>>,
}

impl Writer {
    async fn send(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(bytes).await;
    }

    /// Accepts stream `id` (SYN_REPLY with no headers).
    pub async fn reply(&self, id: u32) {
        // Compression and queueing under one lock: blocks reach the peer
        // in the order they were compressed.
        let mut d = self.deflater.lock().await;
        if let Ok(block) = d.deflate(&frame::header_block(&[])) {
            self.send(frame::syn_reply(id, false, &block)).await;
        }
    }

    /// Sends `data` on stream `id`; `fin` half-closes the stream after it.
    pub async fn data(&self, id: u32, data: &[u8], fin: bool) {
        if data.is_empty() {
            if fin {
                self.send(frame::data(id, true, &[])).await;
            }
            return;
        }
        let mut chunks = data.chunks(MAX_DATA).peekable();
        while let Some(c) = chunks.next() {
            self.send(frame::data(id, fin && chunks.peek().is_none(), c))
                .await;
        }
    }

    pub async fn reset(&self, id: u32, status: u32) {
        self.send(frame::rst_stream(id, status)).await;
    }

    /// Whether the connection is gone (the writer task ended).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if w.write_all(&bytes).await.is_err() {
            return;
        }
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}
