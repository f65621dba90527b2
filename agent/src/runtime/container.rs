//! One container's life on disk and in runc: its state directory, overlay
//! root filesystem, bundle, the shim that starts and watches it, stopping
//! it with signals, and removing every trace. A container's directory is
//! the truth a restarted agent re-adopts from.

use super::shim::{self, Exited, ShimArgs, Started};
use super::{sys, Runtime, RuntimeError};
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// What a container is, kept in its state directory as `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerMeta {
    pub id: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub name: String,
    /// 0 for the first run of this container in this pod, then 1, 2, …
    pub attempt: u32,
    pub init: bool,
    pub image: String,
    pub image_id: String,
    pub log_path: PathBuf,
    pub created_at: String,
}

/// How a container stands now.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Created on disk, not started (or its shim vanished before starting it).
    Created,
    Running(Started),
    Exited(Started, Exited),
    /// Never started: the runtime refused (bad command, missing binary, …).
    StartFailed(Exited),
}

const META_FILE: &str = "meta.json";
const SHIM_PID: &str = "shim.pid";

impl Runtime {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dirs.containers.join(id)
    }

    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("rootfs")
    }

    pub fn termination_log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("termination-log")
    }

    /// The container's cgroup (relative to each hierarchy's root).
    pub fn cgroup(&self, meta: &ContainerMeta) -> String {
        format!("/skiff/pod{}/{}", meta.pod_uid, meta.id)
    }

    /// Makes the state directory and mounts the root filesystem: an overlay
    /// of `layers` (bottom first) with a writable upper dir of its own.
    /// Blocking.
    pub fn prepare(&self, meta: &ContainerMeta, layers: &[PathBuf]) -> Result<(), RuntimeError> {
        let dir = self.container_dir(&meta.id);
        let io = |what: &str, e: std::io::Error| RuntimeError::Io(format!("{what}: {e}"));
        for sub in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| io("creating state dir", e))?;
        }
        std::fs::write(self.termination_log(&meta.id), b"")
            .map_err(|e| io("termination log", e))?;
        shim::write_state(&dir, META_FILE, meta).map_err(|e| io("writing meta", e))?;
        if layers.is_empty() {
            return Err(RuntimeError::Image("the image has no layers".into()));
        }
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|l| l.to_string_lossy().into_owned())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        sys::mount(
            Path::new("overlay"),
            &dir.join("rootfs"),
            Some("overlay"),
            0,
            Some(&data),
        )
        .map_err(|e| io("mounting the root filesystem", e))
    }

    /// Writes the bundle and starts the container through a new shim; returns
    /// once it runs (or failed to start).
    pub async fn start(
        &self,
        meta: &ContainerMeta,
        config: &serde_json::Value,
    ) -> Result<Started, RuntimeError> {
        let dir = self.container_dir(&meta.id);
        let bytes =
            serde_json::to_vec_pretty(config).map_err(|e| RuntimeError::Io(e.to_string()))?;
        tokio::fs::write(dir.join("config.json"), bytes)
            .await
            .map_err(|e| RuntimeError::Io(format!("writing config.json: {e}")))?;
        let (stdin, stdin_once) = super::attach::stdin_flags(config);
        let tty = config["process"]["terminal"] == true;
        let args = ShimArgs {
            id: meta.id.clone(),
            bundle: dir.clone(),
            state_dir: dir.clone(),
            runtime: self.runtime.clone(),
            runtime_root: self.runtime_root.clone(),
            log_path: meta.log_path.clone(),
            log_max_size: self.log_max_size,
            log_max_files: self.log_max_files,
            cgroup: self.cgroup(meta),
            stdin,
            stdin_once,
            tty,
        };
        let shim_log = std::fs::File::create(dir.join("shim.log"))
            .map_err(|e| RuntimeError::Io(format!("shim log: {e}")))?;
        let mut cmd = super::shim::command(&self.shim_exe, &args);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(shim_log);
        // A process group of its own, so signals to the agent's group (a
        // Ctrl-C) never reach it. Not setsid in a pre_exec: that would make
        // std fork the whole agent instead of spawning (vfork) the shim.
        cmd.process_group(0);
        let mut child = tokio::process::Command::from(cmd)
            .spawn()
            .map_err(|e| RuntimeError::Io(format!("starting the shim: {e}")))?;
        if let Some(pid) = child.id() {
            let _ = tokio::fs::write(dir.join(SHIM_PID), pid.to_string()).await;
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| RuntimeError::Io("shim has no stdout".into()))?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        let read = reader.read_line(&mut line);
        match tokio::time::timeout(Duration::from_secs(60), read).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                let _ = child.start_kill();
                return Err(RuntimeError::Start("the shim did not report".into()));
            }
        }
        // The shim lives on; tokio reaps it when it ends.
        drop(child);
        let reply: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| RuntimeError::Start(e.to_string()))?;
        if let Some(err) = reply["error"].as_str() {
            return Err(RuntimeError::Start(err.to_string()));
        }
        shim::read_state(&dir, shim::STARTED_FILE)
            .ok_or_else(|| RuntimeError::Start("the shim wrote no start record".into()))
    }

    pub fn meta(&self, id: &str) -> Option<ContainerMeta> {
        shim::read_state(&self.container_dir(id), META_FILE)
    }

    /// The container's state, from its files and whether its shim lives.
    pub fn state(&self, id: &str) -> State {
        let dir = self.container_dir(id);
        let started: Option<Started> = shim::read_state(&dir, shim::STARTED_FILE);
        let exited: Option<Exited> = shim::read_state(&dir, shim::EXIT_FILE);
        match (started, exited) {
            (Some(s), Some(e)) => State::Exited(s, e),
            (None, Some(e)) => State::StartFailed(e),
            (Some(s), None) if self.shim_alive(id) => State::Running(s),
            (Some(s), None) => {
                // The shim died without a word (killed by hand, OOM): the
                // container cannot be watched any more; count it as ended.
                let e = Exited {
                    exit_code: 255,
                    finished_at: crate::now(),
                    oom_killed: false,
                    start_error: Some("the container's shim ended unexpectedly".into()),
                };
                State::Exited(s, e)
            }
            (None, None) => State::Created,
        }
    }

    /// The shim's pid, if that process still is this container's shim.
    fn shim_pid(&self, id: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.container_dir(id).join(SHIM_PID))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = cmdline.split(|&b| b == 0).any(|arg| arg == id.as_bytes());
        ours.then_some(pid)
    }

    fn shim_alive(&self, id: &str) -> bool {
        self.shim_pid(id).is_some_and(sys::alive)
    }

    /// Waits until the container has ended; returns how.
    pub async fn wait(&self, id: &str) -> Exited {
        if let Some(pid) = self.shim_pid(id) {
            if let Ok(fd) = sys::pidfd_open(pid) {
                // SAFETY: `fd` is an OwnedFd the AsyncFd takes and keeps open.
                if let Ok(afd) = unsafe { tokio::io::unix::AsyncFd::register(fd) } {
                    let _ = afd.readable().await;
                }
            }
        }
        match self.state(id) {
            State::Exited(_, e) | State::StartFailed(e) => e,
            _ => Exited {
                exit_code: 255,
                finished_at: crate::now(),
                oom_killed: false,
                start_error: Some("the container's shim ended unexpectedly".into()),
            },
        }
    }

    /// Sends `signal` (e.g. "SIGTERM") to the container's processes.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let out = self
            .runc()
            .args(["kill", "--all", id, signal])
            .output()
            .await
            .map_err(|e| RuntimeError::Io(e.to_string()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success()
            || stderr.contains("not running")
            || stderr.contains("does not exist")
        {
            Ok(())
        } else {
            Err(RuntimeError::Runtime(stderr.trim().to_string()))
        }
    }

    /// Removes the container from runc and its state directory from disk.
    /// The log file stays (kubectl logs --previous) until the pod goes.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        if let Some(meta) = self.meta(id) {
            let cgroup = self.cgroup(&meta);
            let _ =
                tokio::task::spawn_blocking(move || super::cgroups::reclaim_memory(&cgroup)).await;
        }
        let _ = self.runc().args(["delete", "--force", id]).output().await;
        let dir = self.container_dir(id);
        let rootfs = self.rootfs(id);
        tokio::task::spawn_blocking(move || {
            sys::unmount(&rootfs)?;
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await
        .map_err(|e| RuntimeError::Io(e.to_string()))?
        .map_err(|e| RuntimeError::Io(format!("removing container {id}: {e}")))
    }

    /// Runs `argv` inside the running container (as its process: same user,
    /// environment, working dir); its exit code and combined output. Used by
    /// exec probes and hooks.
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), RuntimeError> {
        if argv.is_empty() {
            return Err(RuntimeError::Runtime("no command".into()));
        }
        let mut cmd = self.runc();
        cmd.arg("exec").arg(id).args(argv).kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| {
                RuntimeError::Runtime(format!(
                    "command {argv:?} timed out after {}s",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| RuntimeError::Io(e.to_string()))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code().unwrap_or(128), text))
    }

    /// Every container on disk.
    pub fn list(&self) -> Vec<ContainerMeta> {
        std::fs::read_dir(&self.dirs.containers)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.meta(&e.file_name().to_string_lossy()))
            .collect()
    }

    fn runc(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.runtime);
        c.arg("--root").arg(&self.runtime_root);
        c
    }

    /// What the container wrote to its termination message file (at most 4 KiB).
    pub fn termination_message(&self, id: &str) -> String {
        let mut text = std::fs::read(self.termination_log(id)).unwrap_or_default();
        text.truncate(4096);
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// A new container id: 64 hex digits, as containerd's.
pub fn new_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}
