//! `kubectl exec`: a command run in a running container with `runc exec`,
//! its stdio on pipes, or with `-t` on a pseudo-terminal we own (runc makes
//! the container's terminal and relays; resizes reach it as SIGWINCH). The
//! session ends with the exit code as a `Status`; a failure of runc itself
//! (no such binary, …) is an internal error, told apart from the command's
//! own exit code by runc's log. A client that goes away hangs the command
//! up (SIGHUP, SIGTERM, forwarded by runc), and runc is killed 5 s later.

use super::pty;
use super::remotecommand::{
    exit_status, first_size, internal_error, success, Options, Output, Size, Streams,
};
use crate::runtime::Runtime;
use bytes::Bytes;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// How long output may trail the command's exit (a background child
/// holding the pipes open must not hold the session forever).
const DRAIN: Duration = Duration::from_secs(5);

/// Runs `argv` in container `id` with the client's streams.
pub async fn run(
    runtime: &Runtime,
    id: &str,
    argv: Vec<String>,
    opts: Options,
    streams: Streams,
) -> Value {
    if argv.is_empty() {
        return internal_error("error executing command in container: no command given");
    }
    let log = runtime
        .container_dir(id)
        .join(format!("exec-{}.log", uuid::Uuid::new_v4().simple()));
    let mut cmd = std::process::Command::new(&runtime.runtime);
    cmd.arg("--root")
        .arg(&runtime.runtime_root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "exec"]);
    let status = if opts.tty {
        let bundle = runtime.container_dir(id);
        let process = log.with_extension("process.json");
        let status = with_terminal(cmd, id, &argv, &bundle, &process, streams).await;
        let _ = std::fs::remove_file(&process);
        status
    } else {
        cmd.arg(id).args(&argv);
        with_pipes(cmd, opts, streams).await
    };
    finish(status, &argv, &log)
}

fn finish(status: std::io::Result<ExitStatus>, argv: &[String], log: &Path) -> Value {
    let failed = runc_error(log);
    let _ = std::fs::remove_file(log);
    match status {
        Err(e) => internal_error(&format!("error executing command in container: {e}")),
        Ok(s) => {
            let code = s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
            match (code, failed) {
                (0, _) => success(),
                (_, Some(msg)) => internal_error(&format!(
                    "error executing command in container: failed to exec in container: OCI runtime exec failed: {msg}"
                )),
                (code, None) => exit_status(code, argv),
            }
        }
    }
}

/// The error runc logged, if runc itself failed.
fn runc_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

async fn with_pipes(
    cmd: std::process::Command,
    opts: Options,
    streams: Streams,
) -> std::io::Result<ExitStatus> {
    let Streams {
        stdin,
        output,
        mut gone,
        ..
    } = streams;
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(pipe(opts.stdin && stdin.is_some()))
        .stdout(pipe(opts.stdout))
        .stderr(pipe(opts.stderr));
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let feeder = child.stdin.take().zip(stdin).map(|(mut w, mut rx)| {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() {
                    break;
                }
            }
            // Dropping the pipe is the command's EOF.
        })
    });
    let mut readers = Vec::new();
    if let Some(r) = child.stdout.take() {
        readers.push(tokio::spawn(copy_out(r, output.clone(), true)));
    }
    if let Some(r) = child.stderr.take() {
        readers.push(tokio::spawn(copy_out(r, output.clone(), false)));
    }
    drop(output);
    let status = wait(&mut child, pid, &mut gone).await;
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(DRAIN, r).await.is_err() {
            abort.abort();
        }
    }
    if let Some(f) = feeder {
        f.abort();
    }
    status
}

async fn copy_out(
    mut r: impl tokio::io::AsyncRead + Unpin,
    out: mpsc::Sender<Output>,
    stdout: bool,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                let o = if stdout {
                    Output::Stdout(data)
                } else {
                    Output::Stderr(data)
                };
                if out.send(o).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Waits for the command; hangs it up if the client leaves first.
async fn wait(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    gone: &mut watch::Receiver<bool>,
) -> std::io::Result<ExitStatus> {
    let signal = |sig: libc::c_int| {
        if let Some(pid) = pid {
            // SAFETY: signals our own child, still unreaped (tokio reaps in wait).
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    };
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            s = child.wait() => return s,
            changed = gone.changed(), if deadline.is_none() => {
                if changed.is_err() || *gone.borrow() {
                    signal(libc::SIGHUP);
                    signal(libc::SIGTERM);
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                signal(libc::SIGKILL);
                return child.wait().await;
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The process `runc exec -p` runs: the container's own (user, env, cwd,
/// capabilities — what `runc exec ARGS` would take from the bundle) with
/// `argv`, under a terminal of `size`. runc sizes the terminal before the
/// command starts; sized afterwards (as `runc exec --tty ARGS` does, from
/// its stdin), a quick `stty size` can still find it 0x0.
fn terminal_process(bundle: &Path, argv: &[String], size: Option<Size>) -> std::io::Result<Value> {
    let config: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    let mut process = config["process"].clone();
    if !process.is_object() {
        return Err(std::io::Error::other("the bundle has no process"));
    }
    process["args"] = serde_json::json!(argv);
    process["terminal"] = Value::Bool(true);
    if let Some(s) = size {
        process["consoleSize"] = serde_json::json!({"height": s.height, "width": s.width});
    }
    Ok(process)
}

async fn with_terminal(
    mut cmd: std::process::Command,
    id: &str,
    argv: &[String],
    bundle: &Path,
    process_file: &Path,
    streams: Streams,
) -> std::io::Result<ExitStatus> {
    let Streams {
        stdin,
        mut resize,
        output,
        mut gone,
    } = streams;
    let pty = pty::open()?;
    let initial = first_size(&mut resize).await;
    if let Some(size) = initial {
        let _ = pty::set_size(&pty.master, size);
    }
    let process = terminal_process(bundle, argv, initial)?;
    std::fs::write(process_file, serde_json::to_vec(&process)?)?;
    cmd.arg("--tty").arg("--process").arg(process_file).arg(id);
    cmd.stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave.try_clone()?));
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| pty::make_controlling_terminal());
    }
    let mut tcmd = tokio::process::Command::from(cmd);
    let spawned = tcmd.spawn();
    // Only runc may hold the slave: its exit then ends our reads.
    drop(tcmd);
    drop(pty.slave);
    let mut child = spawned?;
    let pid = child.id();

    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let mut master_in = std::fs::File::from(pty.master.try_clone()?);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match master_in.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if output.blocking_send(Output::Stdout(data)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO once the last holder of the slave is gone.
                Err(_) => break,
            }
        }
        let _ = done_tx.send(());
    });
    if let Some(mut rx) = stdin {
        let mut master_out = std::fs::File::from(pty.master.try_clone()?);
        std::thread::spawn(move || {
            while let Some(b) = rx.blocking_recv() {
                if master_out.write_all(&b).is_err() {
                    return;
                }
            }
            // The client closed stdin: what a terminal's ^D says.
            let _ = master_out.write_all(&[4]);
        });
    }
    let master = pty.master;
    let resizer = tokio::spawn(async move {
        while resize.changed().await.is_ok() {
            let size = *resize.borrow_and_update();
            if let Some(size) = size {
                let _ = pty::set_size(&master, size);
                if let Some(pid) = pid {
                    // SAFETY: signals our own child; runc resizes the container's terminal.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGWINCH) };
                }
            }
        }
    });
    let status = wait(&mut child, pid, &mut gone).await;
    let _ = tokio::time::timeout(DRAIN, done_rx).await;
    resizer.abort();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_command_runs_as_the_container_does_at_the_clients_size() {
        let dir = std::env::temp_dir().join(format!("skiff-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = serde_json::json!({"process": {
            "args": ["httpd"], "env": ["A=1"], "cwd": "/srv", "user": {"uid": 7, "gid": 7},
            "terminal": false,
        }});
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let argv = vec!["sh".to_string(), "-c".to_string(), "stty size".to_string()];
        let p = terminal_process(
            &dir,
            &argv,
            Some(Size {
                width: 77,
                height: 22,
            }),
        )
        .unwrap();
        assert_eq!(p["args"], serde_json::json!(argv));
        assert_eq!(p["terminal"], true);
        assert_eq!(
            p["consoleSize"],
            serde_json::json!({"height": 22, "width": 77})
        );
        assert_eq!(
            (p["env"][0].clone(), p["cwd"].clone()),
            ("A=1".into(), "/srv".into())
        );
        assert_eq!(p["user"]["uid"], 7);
        let p = terminal_process(&dir, &argv, None).unwrap();
        assert!(p.get("consoleSize").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(terminal_process(&dir, &argv, None).is_err(), "no bundle");
    }
}
