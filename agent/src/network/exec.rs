//! Running one plugin binary the way the CNI spec says: found by its `type`
//! in the bin dirs, parameters in `CNI_*` variables, config on stdin, the
//! result or an error object on stdout; bounded by a timeout, and killed
//! when it runs over.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::error::CniError;
use super::result::PluginErrorBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// The per-run parameters, passed in the environment.
pub struct Invocation<'a> {
    pub command: Command,
    pub container_id: &'a str,
    /// Empty when the namespace is already gone (DEL only).
    pub netns: &'a str,
    pub if_name: &'a str,
    pub args: &'a str,
}

/// The bin dirs and how long one plugin may take.
#[derive(Debug, Clone)]
pub struct Plugins {
    pub bin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

/// How much of a plugin's stderr goes into an error message.
const STDERR_KEEP: usize = 2048;

impl Plugins {
    /// The first executable file named `plugin` in the bin dirs.
    fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        skiff_machinery::command::find_executable(&self.bin_dirs, plugin).ok_or_else(|| {
            CniError::PluginNotFound {
                plugin: plugin.to_string(),
                dirs: self.cni_path(),
            }
        })
    }

    /// `CNI_PATH`: where plugins look for the plugins they delegate to (IPAM).
    fn cni_path(&self) -> String {
        let dirs: Vec<_> = self
            .bin_dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        dirs.join(":")
    }

    /// Runs `plugin` with `config` on stdin; its stdout when it succeeds.
    pub async fn run(
        &self,
        plugin: &str,
        inv: &Invocation<'_>,
        config: &Value,
    ) -> Result<Vec<u8>, CniError> {
        let command = inv.command.as_str();
        let path = self.find(plugin)?;
        let input = serde_json::to_vec(config).map_err(|e| CniError::BadOutput {
            plugin: plugin.to_string(),
            command,
            reason: format!("config not serialisable: {e}"),
        })?;
        // The environment is inherited: plugins run iptables and friends
        // through PATH.
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", inv.container_id)
            .env("CNI_NETNS", inv.netns)
            .env("CNI_IFNAME", inv.if_name)
            .env("CNI_ARGS", inv.args)
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawn_err = |source| CniError::Spawn {
            plugin: plugin.to_string(),
            command,
            source,
        };
        let mut child = spawn(&mut cmd).await.map_err(spawn_err)?;
        let stdin = child.stdin.take();
        let feed = async move {
            if let Some(mut s) = stdin {
                // A plugin that exits without reading its config breaks the
                // pipe; its exit status tells the real story.
                let _ = s.write_all(&input).await;
            }
        };
        let run = async { tokio::join!(feed, child.wait_with_output()).1 };
        let out = match tokio::time::timeout(self.timeout, run).await {
            Ok(out) => out.map_err(spawn_err)?,
            Err(_) => {
                return Err(CniError::Timeout {
                    plugin: plugin.to_string(),
                    command,
                    after: self.timeout,
                })
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            if !stderr.trim().is_empty() {
                tracing::debug!(plugin, command, stderr = %stderr.trim(), "CNI plugin stderr");
            }
            return Ok(out.stdout);
        }
        Err(failure(plugin, command, &out.status, &out.stdout, &stderr))
    }
}

/// Spawns, retrying a few times on ETXTBSY: a binary being installed (or,
/// in a threaded process, one whose write handle a concurrent fork still
/// holds) cannot be executed for a moment.
async fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20 * tries)).await;
            }
            other => return other,
        }
    }
}

/// The error of a failed run: the spec's error object when the plugin
/// printed one, else its exit status and stderr.
fn failure(
    plugin: &str,
    command: &'static str,
    status: &std::process::ExitStatus,
    stdout: &[u8],
    stderr: &str,
) -> CniError {
    if let Ok(body) = serde_json::from_slice::<PluginErrorBody>(stdout) {
        return CniError::Plugin {
            plugin: plugin.to_string(),
            command,
            code: body.code,
            msg: body.msg,
            details: body.details,
        };
    }
    let mut text = stderr.trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(stdout).trim().to_string();
    }
    if text.len() > STDERR_KEEP {
        let mut cut = STDERR_KEEP;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    CniError::Failed {
        plugin: plugin.to_string(),
        command,
        status: status.to_string(),
        stderr: text,
    }
}

/// Parses a plugin's stdout as JSON.
pub fn parse_json(plugin: &str, command: &'static str, stdout: &[u8]) -> Result<Value, CniError> {
    serde_json::from_slice(stdout).map_err(|e| CniError::BadOutput {
        plugin: plugin.to_string(),
        command,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake plugin: a shell script in a temp bin dir.
    struct FakeBin(PathBuf);

    impl FakeBin {
        fn new(tag: &str, script: &str) -> FakeBin {
            let dir =
                std::env::temp_dir().join(format!("skiff-cniexec-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("fake");
            std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            FakeBin(dir)
        }

        fn plugins(&self, timeout: Duration) -> Plugins {
            Plugins {
                bin_dirs: vec![self.0.join("missing"), self.0.clone()],
                timeout,
            }
        }
    }

    impl Drop for FakeBin {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn inv(command: Command) -> Invocation<'static> {
        Invocation {
            command,
            container_id: "c1",
            netns: "/run/netns/x",
            if_name: "eth0",
            args: "IgnoreUnknown=1",
        }
    }

    #[tokio::test]
    async fn passes_env_and_stdin_and_returns_stdout() {
        let bin = FakeBin::new(
            "ok",
            r#"conf=$(cat)
printf '{"env":"%s %s %s %s %s","conf":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$conf""#,
        );
        let p = bin.plugins(Duration::from_secs(10));
        let out = p
            .run("fake", &inv(Command::Add), &serde_json::json!({"a": 1}))
            .await
            .unwrap();
        let v = parse_json("fake", "ADD", &out).unwrap();
        assert_eq!(v["env"], "ADD c1 /run/netns/x eth0 IgnoreUnknown=1");
        assert_eq!(v["conf"], serde_json::json!({"a": 1}));
    }

    #[tokio::test]
    async fn turns_the_error_object_into_a_typed_error() {
        let bin = FakeBin::new(
            "err",
            r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"no addresses","details":"range full"}'; exit 1"#,
        );
        let e = bin
            .plugins(Duration::from_secs(10))
            .run("fake", &inv(Command::Add), &serde_json::json!({}))
            .await
            .unwrap_err();
        match e {
            CniError::Plugin {
                plugin,
                code,
                msg,
                details,
                ..
            } => {
                assert_eq!((plugin.as_str(), code), ("fake", 11));
                assert_eq!(
                    (msg.as_str(), details.as_str()),
                    ("no addresses", "range full")
                );
            }
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn without_an_error_object_reports_stderr() {
        let bin = FakeBin::new("crash", "echo boom >&2; exit 3");
        let e = bin
            .plugins(Duration::from_secs(10))
            .run("fake", &inv(Command::Del), &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(e, CniError::Failed { ref stderr, .. } if stderr == "boom"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn times_out_and_reports_missing_plugins() {
        let bin = FakeBin::new("slow", "sleep 30");
        let p = bin.plugins(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let e = p
            .run("fake", &inv(Command::Check), &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, CniError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let e = p
            .run("nosuch", &inv(Command::Add), &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(e, CniError::PluginNotFound { .. }), "{e}");
    }
}
