//! Running the node's network tools (`ip`, `iptables`, `iptables-restore`)
//! with optional stdin, a time bound, and an error that quotes the command
//! and its stderr. They run in the caller's network namespace: for the agent
//! and the service proxy, the node's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Long enough for iptables waiting on the xtables lock.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program} could not run: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program} {args}` did not finish within {limit:?}")]
    Timeout {
        program: String,
        args: String,
        limit: Duration,
    },
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed {
        program: String,
        args: String,
        status: String,
        stderr: String,
    },
}

/// The first executable file named `name` in `dirs` (a plugin in the CNI
/// bin dirs, a program on PATH).
pub fn find_executable<D: AsRef<Path>>(
    dirs: impl IntoIterator<Item = D>,
    name: &str,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.into_iter().map(|d| d.as_ref().join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `program args…`, feeding `stdin` if given; its stdout on success.
pub async fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<String, CommandError> {
    run_within(program, args, stdin, TIMEOUT).await
}

/// As [`run`], with its own time limit (a large iptables-restore).
pub async fn run_within(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<String, CommandError> {
    let spawn_err = |source| CommandError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let pipe = child.stdin.take();
    let input = stdin.map(<[u8]>::to_vec);
    let feed = async move {
        if let (Some(mut p), Some(input)) = (pipe, input) {
            let _ = p.write_all(&input).await;
        }
    };
    let run = async { tokio::join!(feed, child.wait_with_output()).1 };
    let out = match tokio::time::timeout(limit, run).await {
        Ok(out) => out.map_err(spawn_err)?,
        Err(_) => {
            return Err(CommandError::Timeout {
                program: program.to_string(),
                args: args.join(" "),
                limit,
            })
        }
    };
    if !out.status.success() {
        return Err(CommandError::Failed {
            program: program.to_string(),
            args: args.join(" "),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_input_and_failure() {
        assert_eq!(run("echo", &["hi"], None).await.unwrap(), "hi\n");
        assert_eq!(run("cat", &[], Some(b"fed")).await.unwrap(), "fed");
        let e = run("sh", &["-c", "echo bad >&2; exit 2"], None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
        assert!(matches!(
            run("/nonexistent/skiff-tool", &[], None).await,
            Err(CommandError::Spawn { .. })
        ));
    }
}
