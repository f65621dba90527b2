//! The per-container shim: it starts the container with runc (`run
//! --detach`), owns its stdout/stderr (written to the CRI log file) and
//! collects its exit status, so the container outlives the agent. It is the
//! `skiff-shim` program built beside `skiff` (`scripts/build-release` links
//! it statically: 1.7 MB resident, all but 0.15 MB of it the program's own
//! pages, which every shim shares; against the shared libc 2.5 MB, and as a
//! re-exec of the whole skiff binary 6.7 MB), or `skiff shim` when skiff is
//! alone.
//! Like conmon it is a subreaper: runc exits after `start`, the container's
//! first process is re-parented to the shim, and the shim's `waitpid` sees
//! how it ended. It runs in its own session, synchronously,
//! with no async runtime, to stay small.
//!
//! Talking to the agent: the shim writes one JSON line on its stdout when the
//! container has started (`{"pid":N}`) or failed to (`{"error":"…"}`), then
//! lets go of that pipe. What it leaves on disk, in the container's state
//! directory, is what a restarted agent reads: `started.json` and, once the
//! container ended, `exit.json`.
//!
//! It also serves the container's attach socket (see [`super::attach`]):
//! output goes to attached clients as well as to the log, and a container
//! with `stdin: true` reads from a pipe the shim keeps open for them.

use super::attach;
use super::console;
use super::crilog::{LineSplitter, LogWriter, Stream};
use super::sys;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// What `skiff shim` is told.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's state directory (started.json, exit.json, runc.log).
    pub state_dir: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub log_path: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: usize,
    /// The container's cgroup path (as in config.json), to tell an OOM kill.
    pub cgroup: String,
    /// Keep a stdin pipe for attach clients (`stdin: true`), closed after
    /// the first client with `stdinOnce`.
    pub stdin: bool,
    pub stdin_once: bool,
    /// The container runs under a terminal (`tty: true`): its output is
    /// the terminal's, attach clients may resize it.
    pub tty: bool,
}

impl ShimArgs {
    /// The shim's flags (what [`ShimArgs::parse`] reads back).
    pub fn command_line(&self) -> Vec<String> {
        let p = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            p(&self.bundle),
            "--state-dir".into(),
            p(&self.state_dir),
            "--runtime".into(),
            p(&self.runtime),
            "--runtime-root".into(),
            p(&self.runtime_root),
            "--log-path".into(),
            p(&self.log_path),
            "--log-max-size".into(),
            self.log_max_size.to_string(),
            "--log-max-files".into(),
            self.log_max_files.to_string(),
            "--cgroup".into(),
            self.cgroup.clone(),
        ]
        .into_iter()
        .chain(self.stdin.then(|| "--stdin".to_string()))
        .chain(self.stdin_once.then(|| "--stdin-once".to_string()))
        .chain(self.tty.then(|| "--tty".to_string()))
        .collect()
    }
}

impl ShimArgs {
    /// Reads the arguments `command_line` wrote (after `shim`). Hand-parsed
    /// so the shim never builds the whole CLI: less code paged in per shim.
    pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let mut get = std::collections::HashMap::new();
        let (mut stdin, mut stdin_once, mut tty) = (false, false, false);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            match name {
                "stdin" => stdin = true,
                "stdin-once" => stdin_once = true,
                "tty" => tty = true,
                _ => {
                    let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    get.insert(name.to_string(), value.clone());
                }
            }
        }
        let mut take = |name: &str| {
            get.remove(name)
                .ok_or_else(|| format!("--{name} is required"))
        };
        let number = |v: String, name: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("--{name}: not a number: {v:?}"))
        };
        Ok(ShimArgs {
            id: take("id")?,
            bundle: take("bundle")?.into(),
            state_dir: take("state-dir")?.into(),
            runtime: take("runtime")?.into(),
            runtime_root: take("runtime-root")?.into(),
            log_path: take("log-path")?.into(),
            log_max_size: number(take("log-max-size")?, "log-max-size")?,
            log_max_files: number(take("log-max-files")?, "log-max-files")? as usize,
            cgroup: take("cgroup")?,
            stdin,
            stdin_once,
            tty,
        })
    }
}

/// The name of the shim's own program, built beside `skiff`.
pub const PROGRAM: &str = "skiff-shim";

/// What runs shims for an agent whose executable is `exe`: `skiff-shim`
/// beside it when it is there, else `exe` itself (`skiff shim …`), so a
/// lone copy of the skiff binary still runs containers.
pub fn program(exe: &Path) -> PathBuf {
    let sibling = exe.with_file_name(PROGRAM);
    if sibling.is_file() {
        sibling
    } else {
        exe.to_path_buf()
    }
}

/// The command starting a shim from `program` (see [`program`]).
pub fn command(program: &Path, args: &ShimArgs) -> Command {
    let mut cmd = Command::new(program);
    if program.file_name() != Some(PROGRAM.as_ref()) {
        cmd.arg("shim");
    }
    cmd.args(args.command_line());
    cmd
}

/// The shim's whole life: `args` are its flags (see [`ShimArgs::parse`]);
/// the exit code is the process's.
pub fn main(args: &[String]) -> i32 {
    prepare_process();
    match ShimArgs::parse(args) {
        Ok(a) => run(a),
        Err(e) => {
            eprintln!("skiff shim: {e}");
            2
        }
    }
}

/// Keeps a shim's memory small: no transparent huge pages (the allocator
/// would otherwise back its first arena with a 2 MiB page per process).
fn prepare_process() {
    // SAFETY: plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Written when the container is running.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub pid: i32,
    pub started_at: String,
}

/// Written when the container has ended (or never started).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Exited {
    pub exit_code: i32,
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
    /// Set when the container could not be started at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}

pub const STARTED_FILE: &str = "started.json";
pub const EXIT_FILE: &str = "exit.json";
pub const RUNC_LOG: &str = "runc.log";

/// Writes `value` as JSON to `dir/name` atomically.
pub fn write_state<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(value)?)?;
    std::fs::rename(&tmp, dir.join(name))
}

pub fn read_state<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Option<T> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Runs the shim; returns the process exit code.
pub fn run(args: ShimArgs) -> i32 {
    let report = |line: serde_json::Value| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    match start(&args) {
        Ok((pid, logs, attached)) => {
            report(serde_json::json!({"pid": pid}));
            release_stdout();
            supervise(&args, pid, logs);
            if let Some(a) = attached {
                a.finish(Duration::from_secs(2));
            }
            0
        }
        Err(message) => {
            let exited = Exited {
                exit_code: 128,
                finished_at: crate::now(),
                oom_killed: false,
                start_error: Some(message.clone()),
            };
            let _ = write_state(&args.state_dir, EXIT_FILE, &exited);
            report(serde_json::json!({"error": message}));
            1
        }
    }
}

/// The agent reads only the first line; the shim's stdout goes nowhere after.
fn release_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: duplicates a valid descriptor onto stdout.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

type StartedShim = (i32, mpsc::Receiver<()>, Option<Arc<attach::Server>>);

/// Starts the container with its stdout/stderr on our pipes, or under a
/// terminal whose master runc hands us (`tty`).
fn start(args: &ShimArgs) -> Result<StartedShim, String> {
    sys::become_subreaper().map_err(|e| format!("becoming a subreaper: {e}"))?;
    let log = LogWriter::open(&args.log_path, args.log_max_size, args.log_max_files)
        .map_err(|e| format!("opening {}: {e}", args.log_path.display()))?;
    let log = Arc::new(Mutex::new(log));
    let (done_tx, done_rx) = mpsc::channel();

    // `runc run --detach`: create and start in one runc process (one exec
    // less per container than create + start). runc passes our pipes to the
    // container as its stdout/stderr and exits; the container's first process
    // is then re-parented to us, the subreaper.
    let pid_file = args.state_dir.join("pid");
    let mut run = runc(args);
    run.arg("run")
        .arg("--detach")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    let attached = if args.tty {
        let console =
            console::Socket::listen(&args.state_dir).map_err(|e| format!("console socket: {e}"))?;
        run.arg("--console-socket")
            .arg(console.path())
            .arg(&args.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = run
            .spawn()
            .map_err(|e| format!("running {}: {e}", args.runtime.display()))?;
        let master = match console.receive(&mut child) {
            Ok(m) => m,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = runc(args).args(["delete", "--force", &args.id]).status();
                return Err(format!("{}: {e}", runc_error(args)));
            }
        };
        ran(args, child.wait())?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| e.to_string());
        let stdin = if args.stdin {
            Some(dup(&master)?)
        } else {
            None
        };
        let attached = attach_server(args, stdin, Some(dup(&master)?));
        // A terminal has one output stream: the log's stdout.
        copy_stream(master, Stream::Stdout, log, attached.clone(), done_tx);
        attached
    } else {
        let (out_r, out_w) = sys::pipe().map_err(|e| e.to_string())?;
        let (err_r, err_w) = sys::pipe().map_err(|e| e.to_string())?;
        let (stdin_r, stdin_w) = match args.stdin {
            true => {
                let (r, w) = sys::pipe().map_err(|e| e.to_string())?;
                (Some(r), Some(w))
            }
            false => (None, None),
        };
        let attached = attach_server(args, stdin_w, None);
        copy_stream(
            out_r,
            Stream::Stdout,
            log.clone(),
            attached.clone(),
            done_tx.clone(),
        );
        copy_stream(err_r, Stream::Stderr, log, attached.clone(), done_tx);
        let status = run
            .arg(&args.id)
            .stdin(stdin_r.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w))
            .status();
        ran(args, status)?;
        attached
    };
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| "runc wrote no pid file".to_string())?;
    let started = Started {
        pid,
        started_at: crate::now(),
    };
    write_state(&args.state_dir, STARTED_FILE, &started).map_err(|e| e.to_string())?;
    Ok((pid, done_rx, attached))
}

/// The container's attach socket. Without it the container still runs;
/// only attach fails.
fn attach_server(
    args: &ShimArgs,
    stdin: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
) -> Option<Arc<attach::Server>> {
    attach::Server::start(&args.state_dir, stdin, args.stdin_once, terminal)
        .inspect_err(|e| eprintln!("shim {}: attach socket: {e}", args.id))
        .ok()
}

/// Whether `runc run` succeeded; if not, removes what it left and returns
/// its error.
fn ran(args: &ShimArgs, status: std::io::Result<std::process::ExitStatus>) -> Result<(), String> {
    let status = status.map_err(|e| format!("running {}: {e}", args.runtime.display()))?;
    if !status.success() {
        let message = runc_error(args);
        let _ = runc(args).args(["delete", "--force", &args.id]).status();
        return Err(message);
    }
    Ok(())
}

fn runc(args: &ShimArgs) -> Command {
    let mut c = Command::new(&args.runtime);
    c.arg("--root")
        .arg(&args.runtime_root)
        .arg("--log")
        .arg(args.state_dir.join(RUNC_LOG))
        .arg("--log-format")
        .arg("json");
    c
}

/// The last error runc logged, as the message a container status shows.
pub fn runc_error(args: &ShimArgs) -> String {
    let log = std::fs::read_to_string(args.state_dir.join(RUNC_LOG)).unwrap_or_default();
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| "runc failed without a message".into())
}

/// Copies one of the container's streams into the log file (and to attached
/// clients), on its own thread.
fn copy_stream(
    fd: OwnedFd,
    stream: Stream,
    log: Arc<Mutex<LogWriter>>,
    attached: Option<Arc<attach::Server>>,
    done: mpsc::Sender<()>,
) {
    let channel = match stream {
        Stream::Stdout => attach::STDOUT,
        Stream::Stderr => attach::STDERR,
    };
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(fd);
        let mut splitter = LineSplitter::default();
        let mut buf = vec![0u8; 32 * 1024];
        let mut write = |partial: bool, text: &[u8]| match log.lock() {
            Ok(mut w) => w.record(stream, partial, text),
            Err(_) => Ok(()),
        };
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(a) = &attached {
                        a.broadcast(channel, &buf[..n]);
                    }
                    let _ = splitter.feed(&buf[..n], &mut write);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = splitter.finish(&mut write);
        let _ = done.send(());
    });
}

/// Reaps until the container's process ends, records how, and waits briefly
/// for its output to drain (a daemonised grandchild may hold the pipes open).
fn supervise(args: &ShimArgs, pid: i32, logs: mpsc::Receiver<()>) {
    let code = loop {
        match sys::wait_any() {
            Some((p, code)) if p == pid => break code,
            Some(_) => continue,
            None => break 255,
        }
    };
    let exited = Exited {
        exit_code: code,
        finished_at: crate::now(),
        oom_killed: oom_killed(&args.cgroup),
        start_error: None,
    };
    let streams = if args.tty { 1 } else { 2 };
    for _ in 0..streams {
        if logs.recv_timeout(Duration::from_secs(2)).is_err() {
            break;
        }
    }
    if let Err(e) = write_state(&args.state_dir, EXIT_FILE, &exited) {
        eprintln!("shim {}: writing exit status: {e}", args.id);
    }
}

/// Whether the kernel's OOM killer struck in the container's cgroup
/// (cgroup v1 `memory.oom_control`, v2 `memory.events`).
fn oom_killed(cgroup: &str) -> bool {
    let rel = cgroup.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control"),
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
    ];
    candidates.iter().any(|p| {
        std::fs::read_to_string(p)
            .map(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let a = ShimArgs {
            id: "abc".into(),
            bundle: "/b".into(),
            state_dir: "/s".into(),
            runtime: "runc".into(),
            runtime_root: "/r".into(),
            log_path: "/l/0.log".into(),
            log_max_size: 10,
            log_max_files: 3,
            cgroup: "/skiff/podx/abc".into(),
            stdin: true,
            stdin_once: false,
            tty: true,
        };
        let line = a.command_line();
        let b = ShimArgs::parse(&line).unwrap();
        assert_eq!(b.command_line(), line);
        assert!(ShimArgs::parse(&["--id".into()]).is_err());
    }

    #[test]
    fn the_shim_program_beside_skiff_is_preferred() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let skiff = dir.join("skiff");
        std::fs::write(&skiff, "").unwrap();
        let args = ShimArgs {
            id: "x".into(),
            bundle: "/b".into(),
            state_dir: "/s".into(),
            runtime: "runc".into(),
            runtime_root: "/r".into(),
            log_path: "/l".into(),
            log_max_size: 1,
            log_max_files: 1,
            cgroup: "/c".into(),
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        // A lone skiff binary runs `skiff shim …`.
        assert_eq!(program(&skiff), skiff);
        let cmd = command(&skiff, &args);
        let argv: Vec<_> = cmd.get_args().collect();
        assert_eq!(argv[..2], ["shim", "--id"]);
        // With skiff-shim beside it, that runs, without the subcommand.
        std::fs::write(dir.join(PROGRAM), "").unwrap();
        let shim = program(&skiff);
        assert_eq!(shim, dir.join(PROGRAM));
        let cmd = command(&shim, &args);
        assert_eq!(cmd.get_args().next().unwrap(), "--id");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
