//! The real container runtime: pod sandboxes (shared namespaces), OCI
//! bundles, runc driven through a per-container shim, CRI log files, and the
//! cgroups they live in. `container` is one container's life; `sandbox` the
//! pod's namespaces and name files; `bundle` the OCI config; `shim` the
//! process that owns a running container; `attach` the socket through which
//! it lends the container's stdio to `kubectl attach`.

pub mod attach;
pub mod bundle;
pub mod cgroups;
mod console;
pub mod container;
pub mod crilog;
pub mod sandbox;
pub mod shim;
pub mod sys;
pub mod teardown;
pub mod user;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Io(String),
    #[error("image: {0}")]
    Image(String),
    /// The container could not be started (what runc said).
    #[error("{0}")]
    Start(String),
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Where the agent keeps its state.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `<data-dir>/agent`
    pub root: PathBuf,
    /// One directory per pod sandbox, by pod uid.
    pub pods: PathBuf,
    /// One directory per container, by container id.
    pub containers: PathBuf,
    /// CRI log files: `<logs>/<ns>_<pod>_<uid>/<container>/<attempt>.log`.
    pub logs: PathBuf,
}

impl Dirs {
    pub fn new(data_dir: &std::path::Path, logs: PathBuf) -> Self {
        let root = data_dir.join("agent");
        Dirs {
            pods: root.join("pods"),
            containers: root.join("containers"),
            root,
            logs,
        }
    }

    /// The pod's log directory, as kubelet names it.
    pub fn pod_logs(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.logs.join(format!("{namespace}_{name}_{uid}"))
    }
}

/// The runtime: runc and the shims it is driven through.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub dirs: Dirs,
    /// The OCI runtime binary (`runc`).
    pub runtime: PathBuf,
    /// runc's own state root, private to this agent.
    pub runtime_root: PathBuf,
    /// The program that runs shims (see [`shim::program`]).
    pub shim_exe: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: usize,
}

/// `program` as the absolute path PATH finds it at, when it is a bare
/// name: every container start runs it, and exec would try each PATH
/// entry before the one that has it.
fn on_path(program: PathBuf) -> PathBuf {
    if program.components().count() != 1 {
        return program;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    program
        .to_str()
        .and_then(|name| {
            skiff_machinery::command::find_executable(std::env::split_paths(&path), name)
        })
        .unwrap_or(program)
}

impl Runtime {
    pub fn new(dirs: Dirs, runtime: PathBuf) -> std::io::Result<Self> {
        for d in [&dirs.root, &dirs.pods, &dirs.containers, &dirs.logs] {
            std::fs::create_dir_all(d)?;
        }
        Ok(Runtime {
            runtime_root: dirs.root.join("runc"),
            dirs,
            runtime: on_path(runtime),
            shim_exe: shim::program(&std::env::current_exe()?),
            log_max_size: crilog::DEFAULT_MAX_SIZE,
            log_max_files: crilog::DEFAULT_MAX_FILES,
        })
    }

    /// `runc --version`'s first line's version, for the node's nodeInfo.
    pub async fn version(&self) -> String {
        let out = tokio::process::Command::new(&self.runtime)
            .arg("--version")
            .output()
            .await;
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let v = text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("unknown");
        format!("runc://{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::on_path;
    use std::path::{Path, PathBuf};

    #[test]
    fn a_bare_program_name_is_found_on_path() {
        let sh = on_path("sh".into());
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(on_path("/opt/runc".into()), Path::new("/opt/runc"));
        assert_eq!(on_path("./runc".into()), Path::new("./runc"));
        let missing = PathBuf::from("no-such-program-here");
        assert_eq!(on_path(missing.clone()), missing);
    }
}
