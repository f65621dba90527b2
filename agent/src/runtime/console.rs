//! The console socket of a container that runs under a terminal
//! (`tty: true`): runc creates the terminal while creating the container and
//! sends its master over this socket (`--console-socket`); the shim keeps
//! the master for the container's life (output, attach input, resizes).
//! The socket sits in the container's state dir, reached through
//! `/proc/<shim>/fd/<dir>/` because a state dir path may be longer than a
//! socket address allows (runc, another process, resolves it too).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

const SOCKET: &str = "console.sock";
/// How long runc may take to hand the terminal over.
const HANDOVER: Duration = Duration::from_secs(30);

pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
    file: PathBuf,
    _dir: File,
}

impl Socket {
    pub fn listen(state_dir: &Path) -> io::Result<Socket> {
        let dir = File::open(state_dir)?;
        let file = state_dir.join(SOCKET);
        let _ = std::fs::remove_file(&file);
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}/{SOCKET}",
            std::process::id(),
            dir.as_raw_fd()
        ));
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        Ok(Socket {
            listener,
            path,
            file,
            _dir: dir,
        })
    }

    /// What to give runc's `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal's master, once `runc` (still running) sends it.
    pub fn receive(self, runc: &mut Child) -> io::Result<OwnedFd> {
        let deadline = Instant::now() + HANDOVER;
        let conn = loop {
            match self.listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if runc.try_wait()?.is_some() {
                        return Err(io::Error::other(
                            "runc ended without handing over the terminal",
                        ));
                    }
                    if Instant::now() > deadline {
                        return Err(io::Error::other("runc did not hand over the terminal"));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        };
        conn.set_nonblocking(false)?;
        let master = super::sys::recv_fd(conn.as_raw_fd());
        let _ = std::fs::remove_file(&self.file);
        master
    }
}
