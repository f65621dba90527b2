//! Downloading one blob into the store: the response body streams through
//! a bounded channel into [`ImageStore::put_blob`] on a blocking thread,
//! which hashes as it writes and keeps the blob only if it matches its
//! digest. The body may not be longer than the descriptor says, nor end
//! shorter; it is never held in memory whole.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use http::{Method, StatusCode};
use tokio::sync::mpsc;

use super::digest::hex_of;
use super::oci::Descriptor;
use super::registry::session::describe;
use super::registry::{RegistryError, Session};
use super::ImageStore;

/// Chunks in flight between the network and the disk.
const CHANNEL_DEPTH: usize = 16;

/// Fetches `d` from the session's repository into the store.
pub(crate) async fn fetch(
    store: &ImageStore,
    s: &Session<'_>,
    d: &Descriptor,
) -> Result<(), RegistryError> {
    hex_of(&d.digest)?; // it goes into a URL and a file name
    let url = s.url(&format!("blobs/{}", d.digest));
    let resp = s.send(Method::GET, &url, &[], Bytes::new()).await?;
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(RegistryError::NotFound(format!("blob {}", d.digest))),
        status => {
            let detail = describe(s.transport(), &url, resp).await;
            return Err(RegistryError::Status {
                url,
                status,
                detail,
            });
        }
    }
    let mut chunks = s.transport().chunks(&url, resp.into_body());
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let (store, digest) = (store.clone(), d.digest.clone());
    let writer = tokio::task::spawn_blocking(move || {
        store.put_blob(
            &digest,
            ChannelReader {
                rx,
                cur: Bytes::new(),
            },
        )
    });
    let mut total = 0u64;
    let mut writer_gone = false;
    let streamed: Result<(), RegistryError> = async {
        while let Some(data) = chunks.next().await? {
            total += data.len() as u64;
            if total > d.size {
                return Err(RegistryError::TooLarge {
                    what: format!("blob {}", d.digest),
                    max: d.size,
                });
            }
            if tx.send(Ok(data)).await.is_err() {
                // The writer stopped reading: the blob was there already,
                // or writing failed (its result says which).
                writer_gone = true;
                return Ok(());
            }
        }
        if total != d.size {
            return Err(RegistryError::invalid(
                format!("blob {}", d.digest),
                format!("{total} bytes where its descriptor says {}", d.size),
            ));
        }
        Ok(())
    }
    .await;
    if let Err(e) = &streamed {
        if !writer_gone {
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| RegistryError::invalid("blob writer", e.to_string()))?;
    streamed?;
    written?;
    Ok(())
}

/// A blocking `Read` over chunks an async task sends.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => self.cur = b,
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}
