//! The pod network end to end with the real CNI plugins, inside network
//! namespaces this test makes and removes: a "node" namespace (where the
//! test body runs, on a thread that has setns'd into it, so every plugin,
//! `ip` and `iptables` it spawns acts there and never on the host) and
//! "pod" namespaces bind-mounted by `ip netns add`, as the runtime makes
//! them. Needs root and Debian's containernetworking-plugins; without them
//! it says so and passes.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_agent::network::{
    default_conf, masquerade, routes, Cidr, Cni, CniConfig, CniError, NodeRoutes, PodNetworkRef,
    PortMapping,
};

const PLUGIN_DIR: &str = "/usr/lib/cni";
const POD_CIDR: &str = "10.244.7.0/24";
const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for p in ["bridge", "host-local", "portmap"] {
        if !Path::new(PLUGIN_DIR).join(p).exists() {
            return Some(format!("no {PLUGIN_DIR}/{p} (containernetworking-plugins)"));
        }
    }
    for tool in ["ip", "iptables", "iptables-save", "iptables-restore"] {
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

/// Runs a command (in the calling thread's network namespace); stdout, or
/// a panic quoting stderr.
fn sh(program: &str, args: &[&str]) -> String {
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

/// The namespaces and files of one run, removed however the test ends.
struct Lab {
    node: String,
    pods: Vec<String>,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let prefix = format!("skiff-cnitest-{}", std::process::id());
        let lab = Lab {
            node: format!("{prefix}-node"),
            pods: vec![format!("{prefix}-pod1"), format!("{prefix}-pod2")],
            dir: std::env::temp_dir().join(&prefix),
        };
        let _ = std::fs::remove_dir_all(&lab.dir);
        std::fs::create_dir_all(&lab.dir).expect("temp dir");
        for ns in std::iter::once(&lab.node).chain(&lab.pods) {
            sh("ip", &["netns", "add", ns]);
        }
        // The node: loopback up (hostPorts on 127.0.0.1), and an uplink with
        // MTU 1400 and a default route, for the default config's MTU and as
        // the on-link network of the peer nodes' routes. Nothing is sent on it.
        let n = lab.node.as_str();
        sh("ip", &["-n", n, "link", "set", "lo", "up"]);
        sh(
            "ip",
            &[
                "-n", n, "link", "add", "up0", "mtu", "1400", "type", "veth", "peer", "name",
                "up1", "mtu", "1400",
            ],
        );
        sh("ip", &["-n", n, "link", "set", "up0", "up"]);
        sh("ip", &["-n", n, "link", "set", "up1", "up"]);
        sh(
            "ip",
            &["-n", n, "addr", "add", "10.99.0.2/24", "dev", "up0"],
        );
        sh(
            "ip",
            &["-n", n, "route", "add", "default", "via", "10.99.0.1"],
        );
        lab
    }

    fn netns(name: &str) -> PathBuf {
        Path::new("/run/netns").join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.pods.iter().chain(std::iter::once(&self.node)) {
            if Lab::netns(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a new thread that has joined the network namespace at `ns`.
fn in_netns<T: Send + 'static>(
    ns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::Result<T> {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        enter_netns(&ns);
        f()
    })
    .join()
}

/// Moves the calling thread into the network namespace at `ns`, and makes
/// sure it got there: on failure the thread panics before doing anything.
fn enter_netns(ns: &Path) {
    let file = std::fs::File::open(ns).expect("open netns");
    // SAFETY: a valid open fd; setns affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    let want = std::fs::metadata(ns).expect("stat netns").ino();
    let have = std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat own netns")
        .ino();
    assert_eq!(want, have, "thread is not in {}", ns.display());
}

/// What of skiff's could leak into a namespace: the bridge, chains, routes.
fn skiff_traces() -> (bool, Vec<String>, String) {
    let bridge = Command::new("ip")
        .args(["link", "show", default_conf::BRIDGE])
        .output()
        .is_ok_and(|o| o.status.success());
    let chains = ["iptables-save", "ip6tables-save"]
        .iter()
        .filter_map(|t| Command::new(t).output().ok())
        .flat_map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("SKIFF-"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let proto = routes::ROUTE_PROTO.to_string();
    let routes = sh("ip", &["route", "show", "proto", &proto]);
    (bridge, chains, routes)
}

#[test]
fn pod_network_in_namespaces() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the CNI namespace test: {why}");
        return;
    }
    let host_before = skiff_traces();
    let lab = Lab::new();
    let node = Lab::netns(&lab.node);
    let pods: Vec<PathBuf> = lab.pods.iter().map(|p| Lab::netns(p)).collect();
    let dir = lab.dir.clone();
    let outcome = in_netns(&node, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(node_body(dir, pods))
    });
    drop(lab);
    let host_after = skiff_traces();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(
        host_before, host_after,
        "the host namespace gained skiff state"
    );
    if !host_before.0 {
        assert!(
            !host_after.0,
            "bridge {} in the host namespace",
            default_conf::BRIDGE
        );
    }
}

fn pod(n: u32, ports: Vec<PortMapping>) -> PodNetworkRef {
    PodNetworkRef {
        container_id: format!("sandbox{n}"),
        namespace: "default".into(),
        name: format!("web-{n}"),
        uid: format!("uid-{n}"),
        port_mappings: ports,
    }
}

/// The test proper, on the node's thread.
async fn node_body(dir: PathBuf, pods: Vec<PathBuf>) {
    let conf_dir = dir.join("net.d");
    let agent_dir = dir.join("agent");
    let cidr: Cidr = POD_CIDR.parse().unwrap();

    // The default config, with the uplink's MTU.
    let written = default_conf::ensure(&conf_dir, POD_CIDR, &agent_dir)
        .await
        .unwrap();
    assert!(
        matches!(written, default_conf::Ensured::Written(_)),
        "{written:?}"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(conf_dir.join(default_conf::FILE_NAME)).unwrap())
            .unwrap();
    assert_eq!(
        list["plugins"][0]["mtu"], 1400,
        "MTU of the default route's device"
    );
    let again = default_conf::ensure(&conf_dir, POD_CIDR, &agent_dir)
        .await
        .unwrap();
    assert!(
        matches!(again, default_conf::Ensured::Unchanged(_)),
        "{again:?}"
    );

    let cni = Cni::new(CniConfig {
        conf_dir: conf_dir.clone(),
        bin_dirs: vec![dir.join("no-such-bin"), PLUGIN_DIR.into()],
        cache_dir: agent_dir.join("cni-cache"),
    })
    .with_timeout(Duration::from_secs(30));
    assert_eq!(cni.network().await.unwrap().name, "skiff");

    // ADD: an address from the podCIDR and eth0 in the pod (lo is the
    // sandbox's, not CNI's).
    let web = PortMapping {
        host_port: 18080,
        container_port: 8080,
        protocol: "TCP".into(),
        host_ip: String::new(),
    };
    let pod1 = pod(1, vec![web]);
    let att = cni.add(&pod1, &pods[0]).await.unwrap();
    let ip1 = att.ips[0];
    assert!(cidr.contains(ip1), "{ip1} outside {POD_CIDR}");
    assert_eq!(att.gateway, Some("10.244.7.1".parse().unwrap()));
    let ns1 = pods[0].file_name().unwrap().to_str().unwrap().to_string();
    let addrs = sh("ip", &["-n", &ns1, "-j", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("\"local\":\"{ip1}\"")), "{addrs}");
    assert!(addrs.contains("\"mtu\":1400"), "{addrs}");
    assert_eq!(
        cni.attachment(&pod1).await.unwrap().map(|a| a.ips),
        Some(att.ips.clone())
    );
    // CHECK: portmap before 1.2 fails it for an IPv4-only pod with
    // hostPorts, looking for IPv6 rules it never made
    // (containernetworking/plugins#819); every other plugin must pass.
    match cni.check(&pod1, &pods[0]).await {
        Ok(()) => {}
        Err(CniError::Plugin { plugin, msg, .. })
            if plugin == "portmap" && msg.contains("ipv6") => {}
        Err(e) => panic!("CHECK: {e}"),
    }

    // Reachable from the node: directly, and through the hostPort on the
    // node's own addresses (portmap).
    let server = serve_in(pods[0].clone(), 8080, 3);
    for target in [
        SocketAddr::new(ip1, 8080),
        "10.99.0.2:18080".parse().unwrap(),
        "127.0.0.1:18080".parse().unwrap(),
    ] {
        assert_eq!(hello(target), "hello", "from the node to {target}");
    }
    server.join().expect("pod server");

    // Routes and masquerade, twice: the same state.
    let nr = NodeRoutes::new();
    let peers = |gw: &str| {
        vec![
            ("10.244.8.0/24".to_string(), gw.to_string()),
            (POD_CIDR.to_string(), "10.99.0.2".to_string()),
        ]
    };
    nr.sync(POD_CIDR, CLUSTER_CIDR, &peers("10.99.0.3"))
        .await
        .unwrap();
    let first = iptables_save();
    nr.sync(POD_CIDR, CLUSTER_CIDR, &peers("10.99.0.3"))
        .await
        .unwrap();
    assert_eq!(first, iptables_save(), "a second sync changed the rules");
    assert!(first.contains(&format!(
        "-A {} -s {POD_CIDR} ! -d {CLUSTER_CIDR} ",
        masquerade::NAT_CHAIN
    )));
    assert_eq!(first.matches("-j SKIFF-POSTROUTING").count(), 1, "{first}");
    assert_eq!(first.matches("-j SKIFF-FORWARD").count(), 1, "{first}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let proto = routes::ROUTE_PROTO.to_string();
    let ours = || sh("ip", &["route", "show", "proto", &proto]);
    assert_eq!(ours().trim(), "10.244.8.0/24 via 10.99.0.3 dev up0");
    nr.sync(POD_CIDR, CLUSTER_CIDR, &peers("10.99.0.4"))
        .await
        .unwrap();
    assert_eq!(
        ours().trim(),
        "10.244.8.0/24 via 10.99.0.4 dev up0",
        "moved peer"
    );
    nr.sync(POD_CIDR, CLUSTER_CIDR, &[]).await.unwrap();
    assert_eq!(ours().trim(), "", "stale route removed");
    nr.sync(POD_CIDR, CLUSTER_CIDR, &peers("10.99.0.3"))
        .await
        .unwrap();

    // A second pod gets another address.
    let pod2 = pod(2, vec![]);
    let ip2 = cni.add(&pod2, &pods[1]).await.unwrap().ips[0];
    assert!(cidr.contains(ip2) && ip2 != ip1, "{ip2}");
    cni.check(&pod2, &pods[1]).await.unwrap();

    // DEL releases the address and the record; again is fine.
    let ipam = default_conf::ipam_dir(&agent_dir).join("skiff");
    assert!(ipam.join(ip1.to_string()).exists());
    cni.del(&pod1, &pods[0]).await.unwrap();
    assert!(
        !ipam.join(ip1.to_string()).exists(),
        "{ip1} still allocated"
    );
    assert_eq!(cni.attachment(&pod1).await.unwrap(), None);
    cni.del(&pod1, &pods[0]).await.unwrap();
    assert!(matches!(
        cni.check(&pod1, &pods[0]).await,
        Err(CniError::NotAttached(_))
    ));
    let eth0 = Command::new("ip")
        .args(["-n", &ns1, "link", "show", "eth0"])
        .output()
        .unwrap();
    assert!(!eth0.status.success(), "eth0 left in the pod");

    // DEL after the pod's namespace is gone still releases its address.
    let ns2 = pods[1].file_name().unwrap().to_str().unwrap().to_string();
    sh("ip", &["netns", "del", &ns2]);
    assert!(ipam.join(ip2.to_string()).exists());
    cni.del(&pod2, &pods[1]).await.unwrap();
    assert!(
        !ipam.join(ip2.to_string()).exists(),
        "{ip2} still allocated"
    );
    cni.del(&pod2, &pods[1]).await.unwrap();

    // host-local holds no address any more.
    let addrs_left = std::fs::read_dir(&ipam)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .count();
    assert_eq!(addrs_left, 0, "host-local still holds addresses");

    // A failed ADD is a typed error naming the plugin, and leaves nothing.
    let pod3 = pod(3, vec![]);
    let missing = dir.join("no-such-netns");
    match cni.add(&pod3, &missing).await {
        Err(CniError::Plugin { plugin, .. }) | Err(CniError::Failed { plugin, .. }) => {
            assert_eq!(plugin, "bridge")
        }
        other => panic!("ADD into a missing namespace: {other:?}"),
    }
    assert_eq!(cni.attachment(&pod3).await.unwrap(), None);

    // Cleanup leaves no chain or route of ours.
    nr.cleanup().await.unwrap();
    nr.cleanup().await.unwrap();
    assert!(!iptables_save().contains("SKIFF-"), "chains left");
    assert_eq!(ours().trim(), "");
}

/// The node's rules without the timestamps iptables-save adds.
fn iptables_save() -> String {
    sh("iptables-save", &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Answers "hello" to `count` connections on `port` inside the netns at
/// `ns`, giving up after a deadline.
fn serve_in(ns: PathBuf, port: u16, count: usize) -> std::thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        enter_netns(&ns);
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind in pod");
        listener.set_nonblocking(true).expect("nonblocking");
        let _ = ready_tx.send(());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < count && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.write_all(b"hello");
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(10));
    handle
}

/// Connects to `target` and reads what it says, with deadlines.
fn hello(target: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connect {target}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .unwrap_or_else(|e| panic!("read {target}: {e}"));
    buf
}
