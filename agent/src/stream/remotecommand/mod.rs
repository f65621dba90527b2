//! The remote-command protocol of exec and attach, apart from its
//! transport: which streams the client asked for ([`Options`]), the
//! [`Streams`] an exec or attach session reads and writes, and the final
//! `Status` (success, `NonZeroExitCode` with the exit code, or an internal
//! error) that ends every session. `websocket` carries it as kubectl's
//! `v5.channel.k8s.io`/`v4.channel.k8s.io`, `spdy` as the `v4.channel.k8s.io`
//! SPDY streams of kubectl's fallback.

pub mod spdy;
pub mod websocket;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

/// Which of the standard streams the client wants, and whether it is a terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// From the query (`stdin=1` from an API server, `stdin=true` from a
    /// client); a terminal has no separate stderr, as upstream.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Options, String> {
        let flag = |k: &str| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .is_some_and(|(_, v)| v == "1" || v.eq_ignore_ascii_case("true"))
        };
        let tty = flag("tty");
        let o = Options {
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr") && !tty,
            tty,
        };
        if !o.stdin && !o.stdout && !o.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(o)
    }
}

/// A terminal size, as the resize stream sends it (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Size {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How long a terminal session waits for the client's first size (it comes
/// at once from kubectl, but a loaded machine has delayed it past 1 s).
const INITIAL_SIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The client's first terminal size, waiting for it a while: a command
/// started before it would find a 0x0 terminal (and kubectl's SPDY sends it
/// on a stream of its own, which may come later).
pub async fn first_size(resize: &mut watch::Receiver<Option<Size>>) -> Option<Size> {
    if resize.borrow().is_none() {
        let _ = tokio::time::timeout(INITIAL_SIZE_WAIT, resize.changed()).await;
    }
    *resize.borrow_and_update()
}

/// Output of the remote process.
#[derive(Debug)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// What an exec or attach session gets from its transport.
pub struct Streams {
    /// The client's stdin, if it asked for it; the channel ends with its EOF.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// The latest terminal size, `None` until the client sent one.
    pub resize: watch::Receiver<Option<Size>>,
    /// Where stdout and stderr go; the transport sends the status once every
    /// sender is dropped and the session returned.
    pub output: mpsc::Sender<Output>,
    /// Becomes true when the client went away.
    pub gone: watch::Receiver<bool>,
}

/// `Status` of a session that ended well.
pub fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// `Status` of a command that exited with `code` (not 0), as kubelet words it.
pub fn exit_status(code: i32, argv: &[String]) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// `Status` of a failure of the machinery (an InternalError, code 500).
pub fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn options_from_either_spelling() {
        let o = Options::from_query(&q(&[("stdout", "true"), ("stderr", "1")])).unwrap();
        assert_eq!(
            o,
            Options {
                stdout: true,
                stderr: true,
                ..Default::default()
            }
        );
        let o = Options::from_query(&q(&[("stdin", "1"), ("stderr", "1"), ("tty", "1")])).unwrap();
        assert!(o.stdin && o.tty && !o.stderr);
        assert!(Options::from_query(&q(&[("tty", "true")])).is_err());
    }

    #[test]
    fn exit_status_carries_the_code() {
        let s = exit_status(3, &["sh".into()]);
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(s["reason"], "NonZeroExitCode");
    }
}
