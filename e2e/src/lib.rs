//! The end-to-end suite's harness: a 3-node `skiff lab` per test, driven
//! only through the `skiff` binary and the real `kubectl` on PATH, as an
//! operator drives a cluster. Requests go only to the lab's own addresses
//! (its bridge on this machine); every loop is bounded; a lab is taken down
//! when its test ends, also when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why this machine cannot run the suite, if it cannot (the tests then
/// say so and pass, as the other real-node tests do).
pub fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, runc)".into());
    }
    for (bin, pkg) in [
        ("runc", "runc"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("iptables", "iptables"),
    ] {
        if Command::new(bin).arg("--version").output().is_err() {
            return Some(format!("needs {bin} (Debian package {pkg})"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() && !Path::new("/opt/cni/bin/bridge").exists() {
        return Some("needs the CNI plugins (Debian package containernetworking-plugins)".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("needs /bin/busybox (Debian package busybox-static)".into());
    }
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        return Some("needs kubectl on PATH".into());
    }
    if !skiff_bin().exists() {
        return Some(format!(
            "needs the skiff binary at {} (cargo build --bins, or SKIFF_BIN)",
            skiff_bin().display()
        ));
    }
    None
}

/// The `skiff` binary under test: $SKIFF_BIN, or the one cargo built next
/// to this test (target/<profile>/skiff).
pub fn skiff_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/skiff
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("skiff"))
        .expect("a target directory")
}

/// The second test image, built once per test binary with `skiff images
/// build-busybox`: the same content as the `localhost/busybox:latest` every
/// lab node gets, named `localhost/busybox:v2`, for rolling updates.
fn v2_image() -> &'static Path {
    static IMAGE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &IMAGE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let tar = dir.path().join("busybox-v2.tar");
            let out = Command::new(skiff_bin())
                .args(["images", "build-busybox", "--name", "localhost/busybox:v2"])
                .arg(&tar)
                .output()
                .expect("skiff images build-busybox");
            assert!(
                out.status.success(),
                "build-busybox: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            (dir, tar)
        })
        .1
}

/// One lab of 3 nodes (node-1 … node-3), named after the test process.
pub struct Lab {
    pub name: String,
    dir: tempfile::TempDir,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How long one kubectl call may take before it is killed.
const KUBECTL_LIMIT_SECS: &str = "120";

impl Lab {
    /// `skiff lab up --nodes 3` (which gives every node the test image)
    /// with `:v2` too, extra flags for `lab up` appended.
    pub fn up(extra: &[&str]) -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let lab = Lab {
            name: format!("e{}{n}", std::process::id() % 100_000),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        std::fs::create_dir_all(lab.home()).unwrap();
        let kubeconfig = lab.kubeconfig().to_string_lossy().into_owned();
        let v2 = v2_image().to_string_lossy().into_owned();
        let mut args = vec![
            "lab",
            "up",
            "--nodes",
            "3",
            "--write-kubeconfig",
            &kubeconfig,
            "--images",
            &v2,
            // A lab that fails to come up stays for `logs` to read;
            // dropping `lab` takes it down.
            "--retain",
        ];
        args.extend_from_slice(extra);
        lab.skiff(&args);
        lab
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("labs")
    }

    /// This lab's own directory (its server's and nodes' data).
    pub fn state_dir(&self) -> PathBuf {
        self.state().join(&self.name)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A `skiff lab …` command for this lab; panics with its output if it
    /// fails, returns what it printed.
    pub fn skiff(&self, args: &[&str]) -> String {
        let out = self.skiff_output(args);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "skiff {args:?}: {text}\n{}",
            self.logs()
        );
        text
    }

    fn skiff_output(&self, args: &[&str]) -> Output {
        Command::new(skiff_bin())
            .args(args)
            .args(["--name", &self.name, "--state-dir"])
            .arg(self.state())
            .env("HOME", self.home())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run skiff")
    }

    /// kubectl against the lab, bounded in time.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.kubectl_command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl on PATH");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// A kubectl command against the lab (for streams the test reads as
    /// they come, such as `logs -f` or `port-forward`).
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", KUBECTL_LIMIT_SECS, "kubectl"])
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.home())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args);
        cmd
    }

    /// kubectl that must succeed; its standard output.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_output(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get … -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl -o json prints JSON")
    }

    /// The pods matching a label selector.
    pub fn pods(&self, selector: &str) -> Vec<serde_json::Value> {
        self.get_json(&["pods", "-l", selector])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Running and Ready pods matching a selector, not being deleted.
    pub fn ready_pods(&self, selector: &str) -> Vec<serde_json::Value> {
        self.pods(selector)
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && pod_ready(p))
            .collect()
    }

    /// The nodes' InternalIP addresses, by node name.
    pub fn node_ips(&self) -> Vec<(String, String)> {
        self.get_json(&["nodes"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let ip = n["status"]["addresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["type"] == "InternalIP")
                    .map(|a| a["address"].as_str().unwrap().to_string())
                    .unwrap_or_default();
                (n["metadata"]["name"].as_str().unwrap().to_string(), ip)
            })
            .collect()
    }

    /// Runs a shell command in a pod's (first) container.
    pub fn exec(&self, pod: &str, script: &str) -> Output {
        self.kubectl_output(&["exec", pod, "--", "sh", "-c", script], None)
    }

    /// The end of what the lab's server and agents logged, for failure
    /// messages (the lab's directory is gone once the test ends).
    pub fn logs(&self) -> String {
        let dir = self.state_dir();
        let mut out = String::new();
        for f in [
            "server.log",
            "node-1/agent.log",
            "node-2/agent.log",
            "node-3/agent.log",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("--- {f} (last 30 lines)\n");
            out += &lines[lines.len().saturating_sub(30)..].join("\n");
            out += "\n";
        }
        out
    }
}

/// `skiff lab down` when the test ends, however it ends.
impl Drop for Lab {
    fn drop(&mut self) {
        if self.state().join(&self.name).join("lab.json").exists() {
            let out = self.skiff_output(&["lab", "down"]);
            if !out.status.success() {
                eprintln!("lab down: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}

/// Polls `done` every 200 ms until it holds; panics after `secs`.
pub fn eventually(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn pod_ready(p: &serde_json::Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

pub fn name_of(o: &serde_json::Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// One HTTP/1.0 GET with a 2 s limit on connecting and on the answer; the
/// body of a 200, or why not.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{addr}{path}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_string())
}

/// A lab for `test`, or None (the test passes, saying why) when the machine
/// cannot run labs.
pub fn lab_for(test: &str) -> Option<Lab> {
    if let Some(why) = missing() {
        eprintln!("skipping {test}: {why}");
        return None;
    }
    Some(Lab::up(&[]))
}
