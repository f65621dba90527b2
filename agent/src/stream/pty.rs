//! Pseudo-terminals for `exec -t`: a pty pair whose slave becomes the
//! controlling terminal of `runc exec --tty` (runc then makes the
//! container's own terminal and relays between the two, following our
//! size on SIGWINCH), and the window-size ioctl.

use super::remotecommand::Size;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A new pty pair, both ends close-on-exec, the slave in raw mode (the
/// container's terminal does the line discipline).
pub fn open() -> io::Result<Pty> {
    // SAFETY: plain libc calls on descriptors we own; ptsname_r writes into
    // a buffer of the size we pass.
    unsafe {
        let m = check(libc::posix_openpt(
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        ))?;
        let master = OwnedFd::from_raw_fd(m);
        check(libc::grantpt(m))?;
        check(libc::unlockpt(m))?;
        let mut name = [0 as libc::c_char; 128];
        let rc = libc::ptsname_r(m, name.as_mut_ptr(), name.len());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let path = CStr::from_ptr(name.as_ptr());
        let s = check(libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        ))?;
        let slave = OwnedFd::from_raw_fd(s);
        let mut t: libc::termios = std::mem::zeroed();
        check(libc::tcgetattr(s, &mut t))?;
        libc::cfmakeraw(&mut t);
        check(libc::tcsetattr(s, libc::TCSANOW, &t))?;
        Ok(Pty { master, slave })
    }
}

/// Sets the terminal's window size.
pub fn set_size(fd: &impl AsRawFd, size: Size) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer we pass.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// For `pre_exec`: a new session whose controlling terminal is stdin.
///
/// # Safety
/// Only async-signal-safe calls; meant for the child between fork and exec.
pub unsafe fn make_controlling_terminal() -> io::Result<()> {
    check(libc::setsid())?;
    check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_reads_back() {
        let pty = open().unwrap();
        set_size(
            &pty.master,
            Size {
                width: 77,
                height: 22,
            },
        )
        .unwrap();
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!((ws.ws_col, ws.ws_row), (77, 22));
    }
}
