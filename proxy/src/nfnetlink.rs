//! nf_tables over netlink: one batch of messages per transaction, sent
//! with one `send`, and the kernel's answer. The kernel applies a batch
//! whole or not at all, and does so within the `send` call; only the last
//! message asks for an acknowledgement, so a success is one small answer
//! and a failure is the error of the message that failed (with the
//! kernel's own words when it gives them).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The nf_tables subsystem of nfnetlink.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NFPROTO_IPV4: u8 = 2;

/// Messages of one transaction, encoded.
pub struct Batch {
    buf: Vec<u8>,
    seq: u32,
    /// Where the last real message starts (its flags get the ACK).
    last: Option<usize>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        let mut b = Batch {
            buf: Vec::with_capacity(4096),
            seq: 0,
            last: None,
        };
        let begin = b.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        b.finish_msg(begin);
        b
    }

    /// Writes a message header (length patched later); returns its start.
    fn header(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.seq += 1;
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn finish_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// One nf_tables message of type `msg` (`NFT_MSG_*`) for family ip,
    /// its attributes written by `attrs`.
    pub fn msg(&mut self, msg: u16, flags: u16, attrs: impl FnOnce(&mut Attrs)) {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | msg;
        let start = self.header(ty, NLM_F_REQUEST | flags, NFPROTO_IPV4, 0);
        attrs(&mut Attrs { buf: &mut self.buf });
        self.finish_msg(start);
        self.last = Some(start);
    }

    /// The bytes to send, and the sequence number of the acknowledged
    /// message.
    fn finish(mut self) -> (Vec<u8>, u32) {
        let last = self.last.expect("a batch with messages");
        let flags = u16::from_ne_bytes([self.buf[last + 6], self.buf[last + 7]]) | NLM_F_ACK;
        self.buf[last + 6..last + 8].copy_from_slice(&flags.to_ne_bytes());
        let acked = u32::from_ne_bytes(self.buf[last + 8..last + 12].try_into().expect("4 bytes"));
        let end = self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.finish_msg(end);
        (self.buf, acked)
    }
}

/// Attributes being written into a message.
pub struct Attrs<'a> {
    buf: &'a mut Vec<u8>,
}

impl Attrs<'_> {
    pub fn bytes(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, ty: u16, s: &str) {
        let len = 4 + s.len() + 1;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    pub fn u32(&mut self, ty: u16, v: u32) {
        self.bytes(ty, &v.to_be_bytes());
    }

    pub fn u64(&mut self, ty: u16, v: u64) {
        self.bytes(ty, &v.to_be_bytes());
    }

    pub fn nested(&mut self, ty: u16, inner: impl FnOnce(&mut Attrs)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        inner(&mut Attrs { buf: self.buf });
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Why the kernel refused a batch.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("nf_tables refused the transaction ({errno}){}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        errno: io::Error,
        /// The kernel's extended acknowledgement, if it gave one.
        message: Option<String>,
    },
    #[error("nf_tables did not acknowledge the transaction")]
    NoAnswer,
}

/// A netlink socket to nf_tables, in the network namespace of the thread
/// that opened it.
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    pub fn open() -> io::Result<Socket> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel picks the port.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let s = Socket { fd };
        // The kernel's words with an error (best effort: old kernels lack it).
        let _ = s.set_int(libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        let _ = s.set_int(libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
        Ok(s)
    }

    fn set_int(&self, level: i32, name: i32, v: i32) -> io::Result<()> {
        // SAFETY: a valid fd and a pointer to an int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&v as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: buf is valid for its length.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One read of answers into `buf`; how many bytes.
    fn recv(&self, buf: &mut [u8], flags: i32) -> io::Result<usize> {
        // SAFETY: buf is valid for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends `batch` and waits for the kernel's verdict on it. Blocking:
    /// the kernel does the whole transaction inside the send.
    pub fn apply(&self, batch: Batch) -> Result<(), NetlinkError> {
        let (buf, acked) = batch.finish();
        // One skb holds the whole batch: the send buffer must fit it.
        let want = i32::try_from(buf.len() + (1 << 16)).unwrap_or(i32::MAX);
        if self
            .set_int(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, want)
            .is_err()
        {
            self.set_int(libc::SOL_SOCKET, libc::SO_SNDBUF, want)?;
        }
        self.send(&buf)?;
        // Every answer is queued by now.
        let mut answer = vec![0u8; 1 << 16];
        let mut acknowledged = false;
        loop {
            let n = match self.recv(&mut answer, libc::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            for m in messages(&answer[..n]) {
                match m.error() {
                    Some(0) if m.acked_seq() == Some(acked) => acknowledged = true,
                    Some(0) | None => {}
                    Some(code) => {
                        return Err(NetlinkError::Refused {
                            errno: io::Error::from_raw_os_error(-code),
                            message: ext_ack_message(m.bytes, m.flags),
                        })
                    }
                }
            }
        }
        if acknowledged {
            Ok(())
        } else {
            Err(NetlinkError::NoAnswer)
        }
    }
}

impl Socket {
    /// The messages a dump request of type `msg` (`NFT_MSG_GET*`, for
    /// family ip, filtered by `attrs`) answers with, each as its
    /// attributes' bytes. Blocking, briefly.
    pub fn dump(&self, msg: u16, attrs: impl FnOnce(&mut Attrs)) -> io::Result<Vec<Vec<u8>>> {
        self.query(msg, NLM_F_DUMP, attrs)
    }

    /// The one object a get request of type `msg` names with `attrs`, as
    /// its attributes' bytes; None if there is none.
    pub fn get(&self, msg: u16, attrs: impl FnOnce(&mut Attrs)) -> io::Result<Option<Vec<u8>>> {
        Ok(self.query(msg, 0, attrs)?.pop())
    }

    fn query(
        &self,
        msg: u16,
        flags: u16,
        attrs: impl FnOnce(&mut Attrs),
    ) -> io::Result<Vec<Vec<u8>>> {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | msg;
        let mut b = Batch {
            buf: Vec::new(),
            seq: 0,
            last: None,
        };
        let start = b.header(ty, NLM_F_REQUEST | flags, NFPROTO_IPV4, 0);
        attrs(&mut Attrs { buf: &mut b.buf });
        b.finish_msg(start);
        self.send(&b.buf)?;
        let mut out = Vec::new();
        let mut answer = vec![0u8; 1 << 16];
        loop {
            let n = self.recv(&mut answer, 0)?;
            for m in messages(&answer[..n]) {
                match (m.ty, m.error()) {
                    (NLMSG_DONE, _) => return Ok(out),
                    (_, Some(0)) => {}
                    // No such table or object: nothing of ours.
                    (_, Some(code)) if code == -libc::ENOENT => return Ok(out),
                    (_, Some(code)) => return Err(io::Error::from_raw_os_error(-code)),
                    _ => {
                        out.push(m.bytes.get(20..).unwrap_or_default().to_vec());
                        // A get is answered with the object alone.
                        if flags & NLM_F_DUMP == 0 {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

/// One netlink message of an answer.
struct Message<'a> {
    ty: u16,
    flags: u16,
    /// The whole message, its header included.
    bytes: &'a [u8],
}

impl Message<'_> {
    /// An error message's code (0: an acknowledgement).
    fn error(&self) -> Option<i32> {
        let code = self.bytes.get(16..20)?;
        (self.ty == NLMSG_ERROR).then(|| i32::from_ne_bytes(code.try_into().expect("4 bytes")))
    }

    /// The sequence number of the request an error message answers.
    fn acked_seq(&self) -> Option<u32> {
        let seq = self.bytes.get(28..32)?;
        Some(u32::from_ne_bytes(seq.try_into().expect("4 bytes")))
    }
}

/// The messages in one read of a netlink socket.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
        if len < 16 || len > buf.len() {
            return None;
        }
        let m = Message {
            ty: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            bytes: &buf[..len],
        };
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some(m)
    })
}

/// The string attribute `ty` among a message's attributes.
pub fn string_attr(attrs: &[u8], ty: u16) -> Option<String> {
    let mut rest = attrs;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let t = u16::from_ne_bytes([rest[2], rest[3]]) & !NLA_F_NESTED;
        if len < 4 || len > rest.len() {
            return None;
        }
        if t == ty {
            let v = &rest[4..len];
            let v = v.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    None
}

/// The text of an error's `NLMSGERR_ATTR_MSG`, if the kernel sent one.
/// With NETLINK_CAP_ACK the error carries only the failed message's header.
fn ext_ack_message(msg: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // nlmsghdr (16) + error (4) + the request's nlmsghdr (16).
    string_attr(msg.get(36..)?, NLMSGERR_ATTR_MSG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_frames_its_messages() {
        let mut b = Batch::new();
        b.msg(0, NLM_F_CREATE, |a| {
            a.str(1, "skiff");
            a.nested(2, |a| a.u32(1, 7));
        });
        let (buf, acked) = b.finish();
        // Begin (20), the table (20 + 12 + 12), end (20).
        assert_eq!(buf.len(), 20 + 44 + 20);
        assert_eq!(acked, 2);
        let table = &buf[20..64];
        assert_eq!(u32::from_ne_bytes(table[0..4].try_into().unwrap()), 44);
        let flags = u16::from_ne_bytes([table[6], table[7]]);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        // "skiff\0" padded to 8, after a 4-byte attribute header.
        assert_eq!(&table[20..32], b"\x0a\x00\x01\x00skiff\x00\x00\x00");
        // The nested attribute: flagged, its length covering its child.
        assert_eq!(&table[32..36], &[12, 0, 2, 0x80]);
        assert_eq!(&table[40..44], &7u32.to_be_bytes());
    }
}
