//! `kubectl attach`: joins a running container's stdio through its shim's
//! attach socket ([`crate::runtime::attach`]). Output written from now on
//! reaches the client; its stdin reaches the container if the container
//! keeps one. The session ends when the container ends (the shim closes
//! the socket) or the client leaves. A container with `tty: true` runs
//! under a terminal the shim holds; a terminal client's resizes reach it.

use super::remotecommand::{internal_error, success, Options, Output, Streams};
use crate::runtime::attach as shim;
use crate::runtime::Runtime;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub async fn run(runtime: &Runtime, id: &str, opts: Options, streams: Streams) -> Value {
    let dir = runtime.container_dir(id);
    let conn = match shim::open_dir(&dir) {
        Ok(handle) => UnixStream::connect(shim::socket_path(&handle)).await,
        Err(e) => Err(e),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            return internal_error(&format!(
                "error attaching to container: the container's shim does not serve attach: {e}"
            ))
        }
    };
    let Streams {
        stdin,
        output,
        mut gone,
        resize,
    } = streams;
    let (mut rd, mut wr) = conn.into_split();
    let attach_stdin = opts.stdin && stdin.is_some();
    let hello = if opts.tty {
        shim::HELLO_FRAMES
    } else if attach_stdin {
        shim::HELLO_STDIN
    } else {
        shim::HELLO_OUTPUT
    };
    if wr.write_all(&[hello]).await.is_err() {
        return success();
    }
    let feeder = tokio::spawn(async move {
        if opts.tty {
            frames(&mut wr, stdin.filter(|_| attach_stdin), resize).await;
        } else if let (true, Some(mut rx)) = (attach_stdin, stdin) {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
            // The client's stdin ended: the shim closes the container's
            // if it is stdinOnce.
            let _ = wr.shutdown().await;
        }
        // Keep the write half (the socket) open until the session ends.
        std::future::pending::<()>().await;
    });
    let pump = async {
        loop {
            let mut head = [0u8; 5];
            if rd.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut data = vec![0u8; len];
            if rd.read_exact(&mut data).await.is_err() {
                return;
            }
            let o = match head[0] {
                shim::STDOUT if opts.stdout => Output::Stdout(Bytes::from(data)),
                shim::STDERR if opts.stderr => Output::Stderr(Bytes::from(data)),
                // A terminal client has no stderr: it shares stdout.
                shim::STDERR if opts.tty && opts.stdout => Output::Stdout(Bytes::from(data)),
                _ => continue,
            };
            if output.send(o).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = pump => {}
        _ = gone.wait_for(|g| *g) => {}
    }
    feeder.abort();
    success()
}

/// A terminal client's stdin and sizes, as frames to the shim, until both
/// end.
async fn frames(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    mut stdin: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    mut resize: tokio::sync::watch::Receiver<Option<super::remotecommand::Size>>,
) {
    let mut sizes = true;
    // The client's first size before anything it types, as exec does: what
    // the container does with the input may depend on its terminal's size.
    let mut pending = super::remotecommand::first_size(&mut resize)
        .await
        .map(shim::resize_frame);
    loop {
        if let Some(f) = pending.take() {
            if wr.write_all(&f).await.is_err() {
                return;
            }
        }
        let next = tokio::select! {
            b = async { stdin.as_mut()?.recv().await }, if stdin.is_some() => match b {
                Some(b) => shim::frame(shim::FRAME_STDIN, &b),
                None => {
                    stdin = None;
                    continue;
                }
            },
            changed = resize.changed(), if sizes => {
                if changed.is_err() {
                    sizes = false;
                    continue;
                }
                let Some(size) = *resize.borrow_and_update() else { continue };
                shim::resize_frame(size)
            },
            else => return,
        };
        if wr.write_all(&next).await.is_err() {
            return;
        }
    }
}
