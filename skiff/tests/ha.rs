//! Two servers on one etcd (a private one, on loopback): an HA control
//! plane. They share the cluster's CA through the datastore (sealed with
//! the token), so one kubeconfig works against either; what one writes the
//! other reads; the scheduler and controller-manager Leases have one holder,
//! and when its server dies the other server's components take over. A
//! server with another token is refused.

mod common;

use common::{free_port, have_kubectl, Server};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An etcd of the test's own, on free loopback ports; killed and removed
/// when dropped.
struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    endpoint: String,
}

impl Etcd {
    fn start() -> Option<Etcd> {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "ha", "--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("ha={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let etcd = Etcd {
            child,
            _dir: dir,
            endpoint,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(etcd)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Lease's holder, once it has one.
fn wait_holder(s: &Server, lease: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = holder(s, lease);
        if !h.is_empty() {
            return h;
        }
        assert!(Instant::now() < deadline, "{lease}: no holder");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn holder(s: &Server, lease: &str) -> String {
    let out = s.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        lease,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `a`'s admin kubeconfig, pointed at `b`.
fn kubeconfig_for(a: &Server, b: &Server, dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(a.kubeconfig()).unwrap();
    let path = dir.join("cross.kubeconfig");
    std::fs::write(
        &path,
        text.replace(&format!(":{}", a.port), &format!(":{}", b.port)),
    )
    .unwrap();
    path
}

#[test]
fn two_servers_on_one_etcd_share_a_ca_and_hand_over_leadership() {
    if !have_kubectl() {
        eprintln!("kubectl not on PATH: skipped");
        return;
    }
    let Some(etcd) = Etcd::start() else {
        eprintln!("no etcd binary (Debian: etcd-server): skipped");
        return;
    };
    let token = ["--token", "ha-shared-secret"];
    let mut a = Server::start_with(Some(etcd.endpoint.clone()), &token);
    // A first: its components hold the Leases when B comes.
    let leader = wait_holder(&a, "kube-controller-manager");
    let scheduler = wait_holder(&a, "kube-scheduler");
    let b = Server::start_with(Some(etcd.endpoint.clone()), &token);
    let same = |f: &str| {
        std::fs::read(a.dir.path().join(f)).unwrap() == std::fs::read(b.dir.path().join(f)).unwrap()
    };
    assert!(same("server/tls/ca.crt"), "one CA");
    assert!(same("server/node-token"), "one join token");

    // A's kubeconfig (its client certificate) against B; writes cross over.
    let tmp = tempfile::tempdir().unwrap();
    let cross = kubeconfig_for(&a, &b, tmp.path());
    let via_b = |args: &[&str]| common::kubectl_with(&cross, &tmp.path().join("cache"), args, None);
    a.ok(&["create", "configmap", "from-a", "--from-literal=k=v"]);
    let out = via_b(&["get", "configmap", "from-a", "-o", "jsonpath={.data.k}"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v");

    // B's components wait: the Leases keep their holders.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holder(&b, "kube-controller-manager"), leader);
    assert_eq!(holder(&b, "kube-scheduler"), scheduler);

    // Another token: refused, naming why.
    let other = tempfile::tempdir().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
        ])
        .arg(free_port().to_string())
        .arg("--data-dir")
        .arg(other.path())
        .args(["--datastore-endpoint", &etcd.endpoint, "--token", "wrong"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("another token"), "{why}");

    // A dies: B's components take the Leases over and act (a Deployment
    // gets its ReplicaSet).
    a.kill9();
    let survivor = &b;
    let deadline = Instant::now() + Duration::from_secs(60);
    while holder(survivor, "kube-controller-manager") == leader {
        assert!(
            Instant::now() < deadline,
            "the controller-manager Lease was not taken over"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    survivor.ok(&["create", "deployment", "after", "--image=busybox"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = survivor.kubectl(&["get", "rs", "-l", "app=after", "-o", "name"]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ReplicaSet from the new leader"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
