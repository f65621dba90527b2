//! A real `skiff server` process for tests: started on a free loopback port
//! with its own data dir, killed (by its pid) when dropped.

#![allow(dead_code)]

pub mod realnode;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub datastore: Option<String>,
    /// The address it listens on (loopback unless a test gives one of its own).
    pub bind: String,
    extra: Vec<String>,
}

/// A loopback port nothing listens on. Taken from below the kernel's
/// ephemeral range (32768–60999 by default), so the source port of some
/// outgoing connection cannot take it before the test's process binds it; a
/// counter keeps this test binary's ports apart, the pid other binaries'.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The etcd the test script started, if any.
pub fn etcd() -> Option<String> {
    std::env::var("SKIFF_TEST_ETCD")
        .ok()
        .filter(|s| !s.is_empty())
}

impl Server {
    pub fn start(datastore: Option<String>) -> Server {
        Self::start_with(datastore, &[])
    }

    /// With extra `skiff server` flags.
    pub fn start_with(datastore: Option<String>, extra: &[&str]) -> Server {
        Self::start_on("127.0.0.1", datastore, extra)
    }

    /// Listening on `bind` (an address of the host's the test set up).
    pub fn start_on(bind: &str, datastore: Option<String>, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut s = Server {
            child: None,
            dir,
            port: free_port(),
            datastore,
            bind: bind.to_string(),
            extra,
        };
        s.spawn(true);
        s
    }

    /// A kube-rs client with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let opts = kube::config::KubeConfigOptions::default();
        kube::Client::try_from(
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .unwrap(),
        )
        .unwrap()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// Starts the server; a port taken between `free_port` and the server's
    /// bind (another test, an outgoing connection's ephemeral port) is
    /// retried: with a new port on first start, with the same one on restart
    /// (clients hold its address).
    fn spawn(&mut self, first_start: bool) {
        for attempt in 0..5 {
            match self.try_spawn() {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") && attempt < 4 => {
                    if first_start {
                        self.port = free_port();
                    } else {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Err(log) => panic!("{log}"),
            }
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.kubeconfig());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args([
            "server",
            "--bind-address",
            &self.bind,
            "--https-listen-port",
            &self.port.to_string(),
        ])
        .arg("--data-dir")
        .arg(self.dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(self.dir.path().join("server.log")).unwrap());
        if let Some(ep) = &self.datastore {
            cmd.args(["--datastore-endpoint", ep]);
        }
        cmd.args(&self.extra);
        self.child = Some(cmd.spawn().expect("start skiff server"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.kubeconfig().exists()
                && std::net::TcpStream::connect((self.bind.as_str(), self.port)).is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("skiff server exited with {status}: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("skiff server did not come up: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn(false);
    }

    /// Runs the real kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(
            &self.kubeconfig(),
            &self.dir.path().join("kubectl-cache"),
            args,
            None,
        )
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl_with(
            &self.kubeconfig(),
            &self.dir.path().join("kubectl-cache"),
            args,
            Some(stdin),
        )
    }

    /// Runs the real kubectl with `token` as its only credential: the
    /// server's address from its kubeconfig, no client certificate. (A
    /// kubeconfig of its own, empty: on some machines /dev/null is a plain
    /// file with whatever was written to it.)
    pub fn kubectl_as_token(&self, token: &str, args: &[&str]) -> Output {
        let kubeconfig = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let server = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("the kubeconfig names its server")
            .to_string();
        let empty = self.dir.path().join("token-only-kubeconfig.yaml");
        std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").unwrap();
        let flags = [
            "--server",
            &server,
            "--insecure-skip-tls-verify",
            "--token",
            token,
        ];
        kubectl_with(
            &empty,
            &self.dir.path().join("kubectl-cache"),
            &[&flags[..], args].concat(),
            None,
        )
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn apply(&self, ns: &str, yaml: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// How long one kubectl run may take before it is killed: kubectl itself
/// waits without end (`delete` waits up to a week for the object to go), and
/// a hung test must fail with its arguments rather than stall the whole run.
pub const KUBECTL_LIMIT_SECS: u64 = 180;

pub fn kubectl_with(kubeconfig: &Path, cache: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &KUBECTL_LIMIT_SECS.to_string(), "kubectl"])
        .env("KUBECONFIG", kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args);
    output_with_stdin(cmd, stdin)
}

/// Runs `cmd` with `stdin` as its input (none: /dev/null), collecting its output.
pub fn output_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl on PATH");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn have_kubectl() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `check` every 100 ms until it holds; fails the test after `secs`.
pub async fn eventually(what: &str, secs: u64, check: impl AsyncFnMut() -> bool) {
    assert!(
        settled(secs, check, |held| *held).await,
        "timed out waiting for {what}"
    );
}

/// Polls `fetch` every 100 ms until `done` holds of what it returns, or
/// `secs` have passed; returns the last value either way (so a test can
/// show a wrong outcome in full).
pub async fn settled<T>(
    secs: u64,
    mut fetch: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let value = fetch().await;
        if done(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Until `pods` lists none (each deleted pod gone, not just terminating).
pub async fn no_pods_left(
    what: &str,
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    secs: u64,
) {
    eventually(what, secs, async || {
        pods.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
}

/// Waits for the default namespace's service account, which pods need.
pub async fn default_service_account(c: &kube::Client) {
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(c.clone(), "default");
    eventually("the default service account", 20, async || {
        sas.get_opt("default").await.unwrap().is_some()
    })
    .await;
}

/// A namespace name unique to this run (tests may share one etcd).
pub fn unique_ns(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A process a test started, killed (by its pid) when dropped, so a failing
/// test leaves nothing running.
pub struct Spawned(pub Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skiff agent --simulate` against a server, killed (by pid) when dropped.
pub struct Simulator {
    _child: Spawned,
}

impl Simulator {
    pub fn start(server: &Server, nodes: usize, prefix: &str) -> Simulator {
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "agent",
                "--simulate",
                "--nodes",
                &nodes.to_string(),
                "--name-prefix",
                prefix,
            ])
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skiff agent --simulate");
        Simulator {
            _child: Spawned(child),
        }
    }
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The image of the pod's first container.
pub fn pod_image(p: &k8s_openapi::api::core::v1::Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Polls `kubectl args` until its output satisfies `done`; returns it.
pub fn kubectl_until(s: &Server, what: &str, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = s.kubectl(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl get <kind> <name> -n <ns> -o json`, parsed.
pub fn get_json(s: &Server, kind: &str, name: &str, ns: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["get", kind, name, "-n", ns, "-o", "json"])).unwrap()
}

/// A server and a new namespace whose default service account exists
/// (pods can be created in it); None, after saying so, without kubectl.
pub fn server_and_namespace(prefix: &str) -> Option<(Server, String)> {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return None;
    }
    let s = Server::start(None);
    let ns = unique_ns(prefix);
    s.ok(&["create", "namespace", &ns]);
    kubectl_until(
        &s,
        "the default account",
        &["get", "sa", "default", "-n", &ns],
        |_| true,
    );
    Some((s, ns))
}
