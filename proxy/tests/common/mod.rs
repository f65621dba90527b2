//! What the proxy's kernel tests share: network namespaces made and
//! removed by the test — a "node" namespace (the test body runs on a thread
//! that has setns'd into it, so every iptables or nft it spawns acts
//! there, never on the host) and three "pod" namespaces, each on a veth to
//! the node with a small TCP server answering its own name — and the
//! service ports they route.

#![allow(dead_code)] // each test uses its part

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_proxy::model::{Endpoint, Protocol, ServicePort};
use skiff_proxy::rules::Context;

pub const PODS: usize = 3;

/// Why the test cannot run here (not root, a tool missing), if so.
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("no {tool} on PATH"));
        }
    }
    None
}

pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces of one run, removed however the test ends.
pub struct Lab {
    pub node: String,
    pub pods: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.pods.iter().chain([&self.node]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

pub fn pod_ip(i: usize) -> String {
    format!("10.99.{}.2", i + 1)
}

impl Lab {
    pub fn new() -> Lab {
        let prefix = format!("skiff-proxytest-{}", std::process::id());
        let lab = Lab {
            node: format!("{prefix}-node"),
            pods: (0..PODS).map(|i| format!("{prefix}-p{i}")).collect(),
        };
        sh("ip", &["netns", "add", &lab.node]);
        let n = lab.node.as_str();
        sh("ip", &["-n", n, "link", "set", "lo", "up"]);
        sh(
            "ip",
            &["netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        );
        for (i, p) in lab.pods.iter().enumerate() {
            let veth = format!("v{i}");
            sh("ip", &["netns", "add", p]);
            sh(
                "ip",
                &[
                    "link", "add", &veth, "netns", n, "type", "veth", "peer", "name", "eth0",
                    "netns", p,
                ],
            );
            let gw = format!("10.99.{}.1", i + 1);
            sh(
                "ip",
                &["-n", n, "addr", "add", &format!("{gw}/24"), "dev", &veth],
            );
            sh("ip", &["-n", n, "link", "set", &veth, "up"]);
            sh("ip", &["-n", p, "link", "set", "lo", "up"]);
            sh(
                "ip",
                &[
                    "-n",
                    p,
                    "addr",
                    "add",
                    &format!("{}/24", pod_ip(i)),
                    "dev",
                    "eth0",
                ],
            );
            sh("ip", &["-n", p, "link", "set", "eth0", "up"]);
            sh("ip", &["-n", p, "route", "add", "default", "via", &gw]);
        }
        // Cluster IPs are routed somewhere, as a node's default route does.
        sh(
            "ip",
            &["-n", n, "route", "add", "10.43.0.0/16", "via", &pod_ip(0)],
        );
        lab
    }
}

/// Starts every pod's server, then runs `body` on a thread inside the
/// node namespace with a runtime of its own (and the pod range as the
/// cluster CIDR); the namespaces go when it returns or fails.
pub fn on_node(body: impl FnOnce(&tokio::runtime::Runtime, Context) + Send + 'static) {
    let lab = Lab::new();
    for (i, p) in lab.pods.iter().enumerate() {
        serve(p.clone(), i);
    }
    let node = lab.node.clone();
    let done = std::thread::spawn(move || {
        enter_netns(&node);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ctx = Context {
            cluster_cidr: Some("10.99.0.0/16".parse().unwrap()),
        };
        body(&rt, ctx);
    })
    .join();
    drop(lab);
    if let Err(panic) = done {
        std::panic::resume_unwind(panic);
    }
}

pub fn enter_netns(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    // SAFETY: a valid open fd; setns affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// A server in pod `i`'s namespace answering each connection with `pod<i>`.
/// Its thread ends with the test process.
pub fn serve(ns: String, i: usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter_netns(&ns);
        let listener = TcpListener::bind("0.0.0.0:8080").unwrap();
        tx.send(()).unwrap();
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(format!("pod{i}").as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// One connection; the answer, or the error kind.
pub fn ask(addr: &str) -> Result<String, std::io::ErrorKind> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.kind())?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).map_err(|e| e.kind())?;
    Ok(out)
}

pub fn endpoint(i: usize) -> Endpoint {
    Endpoint {
        ip: pod_ip(i).parse().unwrap(),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        local: true,
    }
}

pub fn web(pods: &[usize]) -> ServicePort {
    ServicePort {
        name: "default/web:http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: "10.43.0.5".parse().unwrap(),
        port: 80,
        node_port: Some(30080),
        external_ips: vec![],
        load_balancer_ips: vec![],
        load_balancer_source_ranges: vec![],
        external_local: false,
        internal_local: false,
        affinity_seconds: None,
        endpoints: pods.iter().map(|i| endpoint(*i)).collect(),
    }
}

pub fn empty() -> ServicePort {
    ServicePort {
        name: "default/empty".into(),
        cluster_ip: "10.43.0.6".parse().unwrap(),
        node_port: None,
        endpoints: vec![],
        ..web(&[])
    }
}

pub fn sticky() -> ServicePort {
    ServicePort {
        name: "default/sticky".into(),
        cluster_ip: "10.43.0.7".parse().unwrap(),
        node_port: None,
        affinity_seconds: Some(60),
        ..web(&[0, 1, 2])
    }
}

/// What both modes do with `web` over all three pods, `empty` and `sticky`
/// in place: the cluster IP spreads over every pod, the node port answers
/// on the node's address, a Service without endpoints refuses at once
/// (not left to time out), and ClientIP affinity keeps a client on one pod.
pub fn check_spread_node_port_refusal_affinity() {
    let mut seen = BTreeMap::<String, usize>::new();
    for _ in 0..300 {
        let who = ask("10.43.0.5:80").expect("the cluster IP answers");
        *seen.entry(who).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "all three pods get traffic: {seen:?}");

    assert!(ask("10.99.1.1:30080").unwrap().starts_with("pod"));

    let t = Instant::now();
    assert_eq!(
        ask("10.43.0.6:80"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(t.elapsed() < Duration::from_secs(1));

    let sticky_answers: BTreeSet<String> = (0..20).map(|_| ask("10.43.0.7:80").unwrap()).collect();
    assert_eq!(sticky_answers.len(), 1, "{sticky_answers:?}");
}
