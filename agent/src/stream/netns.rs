//! Reaching a port of a pod as the pod itself would: a connection to its
//! loopback made inside the pod's network namespace. A thread of our own
//! enters the namespace (setns moves only the calling thread), makes the
//! socket and ends; the socket stays in the pod's namespace.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on the loopback of the network namespace mounted at
/// `netns` (`None`: the node's own, for hostNetwork pods).
pub async fn connect(netns: Option<PathBuf>, port: u16) -> io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-portfwd".into())
        .spawn(move || {
            let _ = tx.send(connect_here(netns, port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the connecting thread died"))??;
    tokio::net::TcpStream::from_std(stream)
}

fn connect_here(netns: Option<PathBuf>, port: u16) -> io::Result<TcpStream> {
    if let Some(path) = netns {
        let ns = File::open(&path)?;
        // SAFETY: setns on a descriptor we hold; affects this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // Sandboxes bring lo up when they are made; one made by an older
        // agent may not have.
        crate::runtime::sys::loopback_up()?;
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e)?
        }
        Err(e) => return Err(e),
    };
    stream.set_nonblocking(true)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
