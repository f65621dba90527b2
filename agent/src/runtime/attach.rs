//! A container's attach socket, served by its shim (threads, no async
//! runtime): `kubectl attach` reaches a running container's stdio through
//! it. The shim fans the container's stdout and stderr out to every
//! attached client, as frames `[stream][length u32 BE][bytes]` (stream 1
//! stdout, 2 stderr), and writes what clients send into the container's
//! stdin — a pipe the shim keeps open when the container spec says
//! `stdin: true`. A client's first byte says whether it attaches stdin
//! (`i`), only watches (`o`), or speaks frames (`t`, for a container under
//! a terminal): `[kind][length u32 BE][bytes]`, kind 0 stdin, kind 4 a
//! terminal size (width, height: u16 BE each). With `stdinOnce`, stdin
//! closes when the first stdin client leaves. The socket is `attach.sock` in the state dir,
//! reached through `/proc/self/fd/<dir>/` because a state dir path may be
//! longer than a socket address allows.
//!
//! Which containers get a stdin pipe travels from the pod spec to the shim
//! as annotations of the OCI config ([`annotate`], [`stdin_flags`]).

use crate::stream::remotecommand::Size;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const SOCKET: &str = "attach.sock";
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// A client's first byte: it attaches stdin, or only reads output.
pub const HELLO_STDIN: u8 = b'i';
pub const HELLO_OUTPUT: u8 = b'o';
pub const HELLO_FRAMES: u8 = b't';
/// Kinds of the frames a `t` client sends.
pub const FRAME_STDIN: u8 = 0;
pub const FRAME_RESIZE: u8 = 4;

const ANNOTATION_STDIN: &str = "io.skiff.container.stdin";
const ANNOTATION_STDIN_ONCE: &str = "io.skiff.container.stdinOnce";

/// Frames queued for a slow client before it is dropped.
const CLIENT_QUEUE: usize = 1024;

/// A frame of the socket's protocol: `[kind][length u32 BE][bytes]`.
pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(data.len() + 5);
    f.push(kind);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// A terminal size as a resize frame: width, height (u16 BE each).
pub fn resize_frame(size: Size) -> Vec<u8> {
    let mut b = size.width.to_be_bytes().to_vec();
    b.extend_from_slice(&size.height.to_be_bytes());
    frame(FRAME_RESIZE, &b)
}

/// Records the container's `stdin`/`stdinOnce` in its OCI config.
pub fn annotate(config: &mut serde_json::Value, c: &k8s_openapi::api::core::v1::Container) {
    if !c.stdin.unwrap_or(false) {
        return;
    }
    if !config["annotations"].is_object() {
        config["annotations"] = serde_json::json!({});
    }
    config["annotations"][ANNOTATION_STDIN] = "true".into();
    if c.stdin_once.unwrap_or(false) {
        config["annotations"][ANNOTATION_STDIN_ONCE] = "true".into();
    }
}

/// `(stdin, stdin_once)` from an OCI config written with [`annotate`].
pub fn stdin_flags(config: &serde_json::Value) -> (bool, bool) {
    let set = |k: &str| config["annotations"][k] == "true";
    (set(ANNOTATION_STDIN), set(ANNOTATION_STDIN_ONCE))
}

/// The attach socket of the container whose state dir `dir` is open as
/// `handle`: a short path to it whatever the dir's length.
pub fn socket_path(handle: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", handle.as_raw_fd()))
}

/// Opens a state dir to reach its socket through [`socket_path`].
pub fn open_dir(dir: &Path) -> io::Result<File> {
    File::open(dir)
}

struct Client {
    tx: mpsc::SyncSender<Vec<u8>>,
}

/// The shim's side: listener, clients, and the container's stdin.
pub struct Server {
    clients: Mutex<Vec<Client>>,
    stdin: Mutex<Option<File>>,
    stdin_once: bool,
    /// The terminal's master, for resizes (`tty: true` only).
    terminal: Option<File>,
    finished: AtomicBool,
    /// Each client's writer thread reports here when it ended.
    done_tx: Mutex<mpsc::Sender<()>>,
    done_rx: Mutex<mpsc::Receiver<()>>,
    writers: Mutex<usize>,
}

impl Server {
    /// Listens on the state dir's socket; `stdin` is the write end of the
    /// container's stdin pipe (or its terminal), if it has one; `terminal`
    /// its terminal's master, if it runs under one.
    pub fn start(
        state_dir: &Path,
        stdin: Option<OwnedFd>,
        stdin_once: bool,
        terminal: Option<OwnedFd>,
    ) -> io::Result<Arc<Server>> {
        let dir = open_dir(state_dir)?;
        let path = socket_path(&dir);
        let _ = std::fs::remove_file(state_dir.join(SOCKET));
        let listener = UnixListener::bind(&path)?;
        drop(dir);
        let (done_tx, done_rx) = mpsc::channel();
        let server = Arc::new(Server {
            clients: Mutex::new(Vec::new()),
            stdin: Mutex::new(stdin.map(File::from)),
            stdin_once,
            terminal: terminal.map(File::from),
            finished: AtomicBool::new(false),
            done_tx: Mutex::new(done_tx),
            done_rx: Mutex::new(done_rx),
            writers: Mutex::new(0),
        });
        let s = server.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if s.finished.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the end at once
                }
                if let Err(e) = s.clone().serve(conn) {
                    eprintln!("attach client: {e}");
                }
            }
        });
        Ok(server)
    }

    fn serve(self: Arc<Self>, conn: UnixStream) -> io::Result<()> {
        let mut out = conn.try_clone()?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(CLIENT_QUEUE);
        let done = self
            .done_tx
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .clone();
        if let Ok(mut n) = self.writers.lock() {
            *n += 1;
        }
        std::thread::spawn(move || {
            while let Ok(frame) = rx.recv() {
                if out.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
            let _ = done.send(());
        });
        if let Ok(mut c) = self.clients.lock() {
            c.push(Client { tx });
        }
        std::thread::spawn(move || self.read_client(conn));
        Ok(())
    }

    /// Copies a client's bytes into the container's stdin.
    fn read_client(&self, mut conn: UnixStream) {
        let mut hello = [0u8; 1];
        if conn.read_exact(&mut hello).is_err() {
            return;
        }
        if hello[0] == HELLO_FRAMES {
            self.read_frames(conn);
            return;
        }
        let wants_stdin = hello[0] == HELLO_STDIN;
        let mut buf = [0u8; 8192];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if wants_stdin => self.write_stdin(&buf[..n]),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if wants_stdin && self.stdin_once {
            if let Ok(mut s) = self.stdin.lock() {
                *s = None;
            }
        }
    }

    /// A `t` client: stdin frames into the container, sizes onto its terminal.
    fn read_frames(&self, mut conn: UnixStream) {
        loop {
            let mut head = [0u8; 5];
            if conn.read_exact(&mut head).is_err() {
                break;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > 1 << 20 {
                break;
            }
            let mut data = vec![0u8; len];
            if conn.read_exact(&mut data).is_err() {
                break;
            }
            match head[0] {
                FRAME_STDIN => self.write_stdin(&data),
                FRAME_RESIZE if data.len() == 4 => {
                    if let Some(t) = &self.terminal {
                        let size = Size {
                            width: u16::from_be_bytes([data[0], data[1]]),
                            height: u16::from_be_bytes([data[2], data[3]]),
                        };
                        let _ = crate::stream::pty::set_size(t, size);
                    }
                }
                _ => {}
            }
        }
        if self.stdin_once {
            if let Ok(mut s) = self.stdin.lock() {
                *s = None;
            }
        }
    }

    fn write_stdin(&self, data: &[u8]) {
        let Ok(mut stdin) = self.stdin.lock() else {
            return;
        };
        if let Some(f) = stdin.as_mut() {
            if f.write_all(data).is_err() {
                *stdin = None;
            }
        }
    }

    /// Sends output to every attached client; one that cannot keep up is dropped.
    pub fn broadcast(&self, stream: u8, data: &[u8]) {
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        if clients.is_empty() || data.is_empty() {
            return;
        }
        let frame = frame(stream, data);
        clients.retain(|c| c.tx.try_send(frame.clone()).is_ok());
    }

    /// The container ended and its output was drained: hands every client
    /// what is queued for it, then closes them (waiting at most `within`).
    pub fn finish(&self, within: Duration) {
        self.finished.store(true, Ordering::SeqCst);
        if let Ok(mut c) = self.clients.lock() {
            c.clear();
        }
        let n = self.writers.lock().map(|n| *n).unwrap_or(0);
        let deadline = Instant::now() + within;
        if let Ok(rx) = self.done_rx.lock() {
            for _ in 0..n {
                let left = deadline.saturating_duration_since(Instant::now());
                if rx.recv_timeout(left).is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_travel_in_the_config() {
        let c: k8s_openapi::api::core::v1::Container = serde_json::from_value(
            serde_json::json!({"name": "c", "stdin": true, "stdinOnce": true}),
        )
        .unwrap();
        let mut config = serde_json::json!({"ociVersion": "1.0.2"});
        annotate(&mut config, &c);
        assert_eq!(stdin_flags(&config), (true, true));
        assert_eq!(stdin_flags(&serde_json::json!({})), (false, false));
    }

    #[test]
    fn clients_get_output_and_feed_stdin() {
        let dir = std::env::temp_dir().join(format!("skiff-attach-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (r, w) = crate::runtime::sys::pipe().unwrap();
        let server = Server::start(&dir, Some(w), true, None).unwrap();
        let handle = open_dir(&dir).unwrap();
        let mut client = UnixStream::connect(socket_path(&handle)).unwrap();
        client.write_all(&[HELLO_STDIN]).unwrap();
        client.write_all(b"typed").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // stdinOnce: once the client is done, the container sees EOF.
        let mut typed = String::new();
        File::from(r).read_to_string(&mut typed).unwrap();
        assert_eq!(typed, "typed");
        // Wait for the client to be registered before broadcasting.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.clients.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        server.broadcast(STDOUT, b"hello");
        server.finish(Duration::from_secs(5));
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, [&[STDOUT, 0, 0, 0, 5][..], b"hello"].concat());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_terminal_client_types_and_resizes() {
        let dir = std::env::temp_dir().join(format!("skiff-attach-tty-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pty = crate::stream::pty::open().unwrap();
        let input = pty.master.try_clone().unwrap();
        let _server = Server::start(&dir, Some(input), false, Some(pty.master)).unwrap();
        let handle = open_dir(&dir).unwrap();
        let mut client = UnixStream::connect(socket_path(&handle)).unwrap();
        client.write_all(&[HELLO_FRAMES]).unwrap();
        client
            .write_all(&frame(FRAME_RESIZE, &[0, 90, 0, 30]))
            .unwrap();
        client.write_all(&frame(FRAME_STDIN, b"typed\n")).unwrap();
        // The slave (the container's side) reads what was typed...
        let mut slave = File::from(pty.slave);
        let mut got = [0u8; 6];
        slave.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"typed\n");
        // ...and has the size sent (it came before the input).
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills the winsize we pass.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!((ws.ws_col, ws.ws_row), (90, 30));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
