//! The OCI runtime config (`config.json`) of one container: its process
//! (command merged with the image's Entrypoint/Cmd, env, user, working dir,
//! capabilities), root filesystem, mounts, the pod's shared namespaces and
//! its cgroup with cpu and memory limits. What runc runs is exactly this.

use super::sandbox::Sandbox;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};
use skiff_machinery::quantity::Quantity;
use std::path::PathBuf;

/// What containerd grants a container that asks for nothing else.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for `privileged` and `add: [ALL]`.
const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths containerd hides from unprivileged containers.
const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];
const READONLY_PATHS: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/sys/fs/cgroup",
];

/// The image's defaults for the process.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

pub struct BundleInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageDefaults,
    /// The container's environment, resolved (`NAME=value`), image env first.
    pub env: Vec<String>,
    /// The user to run as: uid, gid, supplementary gids.
    pub user: (u32, u32, Vec<u32>),
    pub rootfs: PathBuf,
    pub sandbox: &'a Sandbox,
    pub hostname: String,
    pub termination_log: PathBuf,
    pub mounts: Vec<BindMount>,
    pub cgroup: String,
    /// The PID namespace to join (an ephemeral container's target's);
    /// `None` makes one of its own.
    pub pid_namespace: Option<PathBuf>,
}

/// The process's argv: the container's command/args merged with the image's
/// Entrypoint/Cmd as upstream does, `$(VAR)` references expanded.
pub fn argv(container: &Container, image: &ImageDefaults, env: &[String]) -> Vec<String> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let argv = match (command.is_empty(), args.is_empty()) {
        (false, _) => [command, args].concat(),
        (true, false) => [image.entrypoint.clone(), args].concat(),
        (true, true) => [image.entrypoint.clone(), image.cmd.clone()].concat(),
    };
    let lookup = |name: &str| {
        env.iter().rev().find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    argv.iter().map(|a| expand(a, &lookup)).collect()
}

/// Upstream's `$(VAR)` expansion: a known variable is replaced, an unknown
/// reference kept as written, `$$` is a literal `$`.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn millis(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i128> {
    q.and_then(|q| Quantity::parse(&q.0).ok()).map(|q| q.millis)
}

/// cgroup settings from requests and limits, as kubelet derives them.
pub fn resources(container: &Container) -> Value {
    let res = container.resources.clone().unwrap_or_default();
    let requests = res.requests.unwrap_or_default();
    let limits = res.limits.unwrap_or_default();
    let cpu_limit = millis(limits.get("cpu"));
    let cpu_request = millis(requests.get("cpu")).or(cpu_limit);
    // kubelet: shares = milliCPU * 1024 / 1000, at least 2.
    let shares = cpu_request.map_or(2, |m| (m * 1024 / 1000).max(2));
    let mut cpu = json!({"shares": shares as u64});
    if let Some(limit) = cpu_limit {
        const PERIOD: i128 = 100_000;
        // At least 1 ms of every period, as kubelet's MinQuotaPeriod.
        cpu["quota"] = json!(((limit * PERIOD) / 1000).max(1000) as i64);
        cpu["period"] = json!(PERIOD as u64);
    }
    let mut out = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": cpu,
    });
    if let Some(mem) = millis(limits.get("memory")) {
        out["memory"] = json!({"limit": (mem / 1000) as i64, "swap": (mem / 1000) as i64});
    }
    out
}

/// Capabilities after the container's securityContext add/drop.
fn capabilities(container: &Container, privileged: bool) -> Vec<String> {
    if privileged {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    let caps = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.clone())
        .unwrap_or_default();
    let norm = |c: &String| {
        let c = c.to_uppercase();
        if c.starts_with("CAP_") {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    let add: Vec<String> = caps.add.unwrap_or_default().iter().map(norm).collect();
    let drop: Vec<String> = caps.drop.unwrap_or_default().iter().map(norm).collect();
    // containerd's order: ALL first (add, then drop), then the single ones,
    // so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps just that one.
    let mut set: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if add.iter().any(|c| c == "CAP_ALL") {
        set = ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    if drop.iter().any(|c| c == "CAP_ALL") {
        set.clear();
    }
    set.extend(
        add.into_iter()
            .filter(|c| ALL_CAPABILITIES.contains(&c.as_str())),
    );
    set.retain(|c| !drop.contains(c));
    set.sort();
    set.dedup();
    set
}

/// The whole config.json.
pub fn config(input: &BundleInput) -> Value {
    let c = input.container;
    let sc = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let caps = capabilities(c, privileged);
    let (uid, gid, groups) = &input.user;
    let cwd = c
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| input.image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".into());
    let mut process = json!({
        // tty: true runs under a terminal the shim holds (runc hands it the
        // master through the console socket).
        "terminal": c.tty.unwrap_or(false),
        "user": {"uid": uid, "gid": gid, "additionalGids": groups},
        "args": argv(c, input.image, &input.env),
        "env": input.env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.allow_privilege_escalation == Some(false),
    });
    if *uid != 0 && !privileged {
        // A non-root user keeps no effective capabilities, as upstream's runtimes do.
        process["capabilities"]["effective"] = json!([]);
        process["capabilities"]["permitted"] = json!([]);
    }
    let sandbox = input.sandbox;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    let bind = |src: PathBuf, dst: &str, ro: bool| {
        json!({"destination": dst, "type": "bind", "source": src,
               "options": ["rbind", "rprivate", if ro { "ro" } else { "rw" }]})
    };
    mounts.push(bind(sandbox.hosts_file(), "/etc/hosts", false));
    mounts.push(bind(sandbox.resolv_conf(), "/etc/resolv.conf", false));
    mounts.push(bind(sandbox.hostname_file(), "/etc/hostname", false));
    let termination_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(bind(
        input.termination_log.clone(),
        &termination_path,
        false,
    ));
    for m in &input.mounts {
        mounts.push(bind(m.source.clone(), &m.destination, m.read_only));
    }
    let host_pid = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_pid)
        .unwrap_or(false);
    let mut namespaces = vec![json!({"type": "mount"})];
    if !host_pid {
        match &input.pid_namespace {
            Some(path) => namespaces.push(json!({"type": "pid", "path": path})),
            None => namespaces.push(json!({"type": "pid"})),
        }
    }
    // The pod's own namespaces are joined; those it shares with the node
    // are left out, so the container keeps the agent's (the node's).
    for kind in sandbox.own_namespaces() {
        let oci = if *kind == "net" { "network" } else { kind };
        namespaces.push(json!({"type": oci, "path": sandbox.namespace(kind)}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": input.cgroup,
        "resources": resources(c),
    });
    if privileged {
        linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    } else {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": input.rootfs, "readonly": sc.read_only_root_filesystem.unwrap_or(false)},
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if !sandbox.own_namespaces().contains(&"uts") {
        // The node's UTS namespace: its hostname is not the pod's to set.
        config.as_object_mut().map(|o| o.remove("hostname"));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(v: Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn command_merging_and_expansion() {
        let image = ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            ..Default::default()
        };
        let env = vec!["GREETING=hello".to_string()];
        let c = container(json!({"name": "c"}));
        assert_eq!(argv(&c, &image, &env), ["/entry", "serve"]);
        let c =
            container(json!({"name": "c", "args": ["$(GREETING)", "$(MISSING)", "$$(GREETING)"]}));
        assert_eq!(
            argv(&c, &image, &env),
            ["/entry", "hello", "$(MISSING)", "$(GREETING)"]
        );
        let c = container(json!({"name": "c", "command": ["sh", "-c"], "args": ["echo hi"]}));
        assert_eq!(argv(&c, &image, &env), ["sh", "-c", "echo hi"]);
        let c = container(json!({"name": "c", "command": ["sleep"]}));
        assert_eq!(argv(&c, &image, &env), ["sleep"]);
    }

    #[test]
    fn cgroup_resources() {
        let c = container(
            json!({"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}),
        );
        let r = resources(&c);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["memory"]["limit"], 64 * 1024 * 1024);
        let r = resources(&container(json!({"name": "c"})));
        assert_eq!(r["cpu"]["shares"], 2);
        assert!(r.get("memory").is_none());
    }

    #[test]
    fn capability_add_drop() {
        let c = container(
            json!({"name": "c", "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL", "CAP_CHOWN"]}}}),
        );
        let caps = capabilities(&c, false);
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        let c = container(
            json!({"name": "c", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}),
        );
        assert_eq!(capabilities(&c, false), ["CAP_NET_BIND_SERVICE"]);
    }
}
