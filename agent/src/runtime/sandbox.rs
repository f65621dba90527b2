//! A pod's sandbox: the network, IPC and UTS namespaces its containers share,
//! held for the pod's life by bind-mounting each namespace file under the
//! pod's directory (as `ip netns add` does) — no pause process to run or
//! re-adopt. Its network namespace starts with `lo` up. The files survive an
//! agent restart; the namespaces die when they are unmounted and no
//! container is left in them. The pod's own `/etc/hosts`, `/etc/resolv.conf`
//! and `/etc/hostname` live beside them and are bind-mounted into every
//! container.

use super::sys;
use std::io;
use std::path::{Path, PathBuf};

const NAMESPACES: [(&str, libc::c_int); 3] = [
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
];

#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
    /// The namespaces of its own ("net", "ipc", "uts"); the others are the
    /// node's (hostNetwork shares net and uts, hostIPC shares ipc).
    own: Vec<&'static str>,
}

impl Sandbox {
    /// The sandbox whose files live in `dir` (`<agent dir>/pods/<uid>`),
    /// with all three namespaces of its own.
    pub fn at(dir: PathBuf) -> Self {
        Sandbox {
            dir,
            own: NAMESPACES.iter().map(|(k, _)| *k).collect(),
        }
    }

    /// The sandbox `pod` needs: its own namespaces except those it shares with the node.
    pub fn for_pod(dir: PathBuf, pod: &k8s_openapi::api::core::v1::Pod) -> Self {
        let spec = pod.spec.as_ref();
        let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
        let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
        let own = NAMESPACES
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| match *k {
                "net" | "uts" => !host_net,
                "ipc" => !host_ipc,
                _ => true,
            })
            .collect();
        Sandbox { dir, own }
    }

    /// The namespaces the pod has of its own.
    pub fn own_namespaces(&self) -> &[&'static str] {
        &self.own
    }

    /// Whether the pod uses the node's network.
    pub fn host_network(&self) -> bool {
        !self.own.contains(&"net")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a namespace of the pod is mounted on: `net`, `ipc` or `uts`.
    pub fn namespace(&self, kind: &str) -> PathBuf {
        self.dir.join("ns").join(kind)
    }

    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    pub fn hostname_file(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    /// Whether the namespaces are there (made earlier, maybe by an earlier agent).
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
            && self
                .own
                .iter()
                .all(|kind| sys::is_namespace_mount(&self.namespace(kind)))
    }

    /// Makes the namespaces (if not there yet) with `hostname` set in the
    /// UTS one. Blocking: call from `spawn_blocking`.
    pub fn create(&self, hostname: &str) -> io::Result<()> {
        if self.exists() {
            return Ok(());
        }
        let ns_dir = self.dir.join("ns");
        std::fs::create_dir_all(&ns_dir)?;
        let own: Vec<(&str, libc::c_int)> = NAMESPACES
            .iter()
            .filter(|(k, _)| self.own.contains(k))
            .copied()
            .collect();
        for (kind, _) in own.iter().copied() {
            let file = self.namespace(kind);
            sys::unmount(&file)?;
            std::fs::File::create(&file)?;
        }
        // unshare(2) moves only the calling thread, so a thread of our own
        // makes the namespaces, pins them with bind mounts and ends; no
        // thread of a pool is ever left inside a pod's namespaces.
        let this = self.clone();
        let hostname = hostname.to_string();
        std::thread::spawn(move || -> io::Result<()> {
            let flags = own.iter().fold(0, |f, (_, flag)| f | flag);
            sys::unshare(flags)?;
            if flags & libc::CLONE_NEWUTS != 0 {
                sys::sethostname(&hostname)?;
            }
            // A new network namespace has only lo, and down: the sandbox
            // brings it up itself (what CNI's loopback plugin would do, without
            // a plugin run per pod); eth0 is the CNI chain's.
            if flags & libc::CLONE_NEWNET != 0 {
                sys::loopback_up()?;
            }
            for (kind, _) in own {
                let source = PathBuf::from(format!("/proc/thread-self/ns/{kind}"));
                sys::mount(&source, &this.namespace(kind), None, libc::MS_BIND, None)?;
            }
            Ok(())
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
        .inspect_err(|_| {
            let _ = self.destroy();
        })
    }

    /// Writes the pod's hosts, resolv.conf and hostname files.
    pub fn write_files(&self, files: &PodFiles) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_atomic(&self.hosts_file(), &files.hosts)?;
        write_atomic(&self.resolv_conf(), &files.resolv_conf)?;
        write_atomic(&self.hostname_file(), &format!("{}\n", files.hostname))
    }

    /// Unmounts the namespaces (and any volume mounted below the pod's
    /// directory) and removes the directory. Idempotent.
    pub fn destroy(&self) -> io::Result<()> {
        for (kind, _) in NAMESPACES {
            sys::unmount(&self.namespace(kind))?;
        }
        for m in sys::mounts_under(&self.dir) {
            sys::unmount(&m)?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The name files a pod's containers see.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFiles {
    pub hostname: String,
    pub hosts: String,
    pub resolv_conf: String,
}

/// DNS settings of the node (kubelet's `--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone)]
pub struct Dns {
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The node's own resolv.conf, for `dnsPolicy: Default` and as the source
    /// of search domains upstream appends.
    pub host_resolv_conf: String,
}

impl PodFiles {
    /// Upstream's files for `pod` with address `ip`: the hostname (or
    /// `spec.hostname`), `/etc/hosts` with the pod's FQDN when it has a
    /// subdomain and its hostAliases, and resolv.conf per `dnsPolicy`.
    pub fn for_pod(pod: &k8s_openapi::api::core::v1::Pod, ip: &str, dns: &Dns) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.to_string());
        hostname.truncate(63);
        let mut hosts = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        if !ip.is_empty() {
            match &spec.subdomain {
                Some(sub) if !sub.is_empty() => hosts.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.{} {hostname}\n",
                    dns.cluster_domain
                )),
                _ => hosts.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
        let aliases = spec.host_aliases.clone().unwrap_or_default();
        if !aliases.is_empty() {
            hosts.push_str("\n# Entries added by HostAliases.\n");
            for a in aliases {
                let names = a.hostnames.unwrap_or_default().join("\t");
                hosts.push_str(&format!("{}\t{names}\n", a.ip));
            }
        }
        PodFiles {
            hostname,
            hosts,
            resolv_conf: resolv_conf(&spec, ns, dns),
        }
    }
}

/// resolv.conf as kubelet writes it for each dnsPolicy.
fn resolv_conf(spec: &k8s_openapi::api::core::v1::PodSpec, ns: &str, dns: &Dns) -> String {
    let host_net = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (host_servers, host_search, host_options) = parse_resolv_conf(&dns.host_resolv_conf);
    let (mut servers, mut search, mut options) = match policy {
        "None" => (Vec::new(), Vec::new(), Vec::new()),
        "Default" => (host_servers, host_search, host_options),
        "ClusterFirstWithHostNet" | "ClusterFirst"
            if (policy == "ClusterFirst" && host_net) || dns.cluster_dns.is_empty() =>
        {
            (host_servers, host_search, host_options)
        }
        _ => {
            let d = &dns.cluster_domain;
            let mut search = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            search.extend(host_search);
            (dns.cluster_dns.clone(), search, vec!["ndots:5".to_string()])
        }
    };
    if let Some(cfg) = &spec.dns_config {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        search.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.clone().unwrap_or_default() {
            let Some(name) = o.name else { continue };
            options.retain(|x| x.split(':').next() != Some(name.as_str()));
            options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    // Upstream's limits: 3 nameservers, 32 search domains.
    servers.truncate(3);
    search.dedup();
    search.truncate(32);
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn parse_resolv_conf(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut search, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                search = words.map(str::to_string).collect();
            }
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (servers, search, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn dns() -> Dns {
        Dns {
            cluster_dns: vec!["10.43.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 192.0.2.53\nsearch lab.example\n".into(),
        }
    }

    #[test]
    fn cluster_first_resolv_conf_and_hosts() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {"containers": [], "hostname": "web-0", "subdomain": "web",
                     "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo", "bar"]}]},
        }))
        .unwrap();
        let f = PodFiles::for_pod(&pod, "10.42.0.7", &dns());
        assert_eq!(
            f.resolv_conf,
            "search shop.svc.cluster.local svc.cluster.local cluster.local lab.example\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
        assert!(f
            .hosts
            .contains("10.42.0.7\tweb-0.web.shop.svc.cluster.local web-0\n"));
        assert!(f.hosts.contains("10.1.2.3\tfoo\tbar\n"));
        assert_eq!(f.hostname, "web-0");
    }

    #[test]
    fn default_and_none_policies() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [], "dnsPolicy": "Default"},
        }))
        .unwrap();
        assert_eq!(
            PodFiles::for_pod(&pod, "", &dns()).resolv_conf,
            "search lab.example\nnameserver 192.0.2.53\n"
        );
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [], "dnsPolicy": "None",
                     "dnsConfig": {"nameservers": ["1.2.3.4"], "options": [{"name": "ndots", "value": "2"}]}},
        }))
        .unwrap();
        assert_eq!(
            PodFiles::for_pod(&pod, "", &dns()).resolv_conf,
            "nameserver 1.2.3.4\noptions ndots:2\n"
        );
    }

    /// Needs root (namespaces and mounts); skipped otherwise.
    #[test]
    fn namespaces_come_with_lo_up_and_go_away() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: not root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("skiff-sandbox-{}", std::process::id()));
        let sb = Sandbox::at(dir.join("pod"));
        sb.create("web-0").unwrap();
        assert!(sb.exists());
        let run = |args: &[&str]| {
            let net = format!("--net={}", sb.namespace("net").display());
            let uts = format!("--uts={}", sb.namespace("uts").display());
            let out = std::process::Command::new("nsenter")
                .args([net.as_str(), uts.as_str()])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let lo = run(&["ip", "-j", "link", "show", "dev", "lo"]);
        assert!(lo.contains("\"UP\""), "lo is not up: {lo}");
        assert_eq!(run(&["hostname"]).trim(), "web-0");
        sb.destroy().unwrap();
        assert!(!sb.exists());
        assert!(!sb.dir().exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
