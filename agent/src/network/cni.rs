//! The CNI client the agent calls to put a pod sandbox on the pod network
//! and take it off again (CNI spec 1.0, as libcni and containerd drive it):
//! ADD runs the configured chain in order, each plugin getting the previous
//! one's result; the final result is cached per sandbox. (`lo` is not a CNI
//! network here, as it is in containerd: the sandbox brings it up when it
//! makes the namespace, which spares a loopback plugin run per pod start
//! and per pod deletion.) DEL runs the chain in reverse with the cached
//! config and result, and succeeds when there is nothing left to remove.
//! CHECK replays the cached result through the chain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::cache::{self, CachedAttachment, ResultCache};
use super::conf::{self, ConfError, NetworkConfigList};
use super::error::CniError;
use super::exec::{self, Command, Invocation, Plugins};
use super::pod::{port_mappings_json, PodNetworkRef, PortMapping};
use super::result::{Attachment, CniResult};

/// The pod's interface, as the kubelet names it.
pub const POD_IFNAME: &str = "eth0";
/// How long one plugin run may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the CNI client finds its config and plugins and keeps its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// `/etc/cni/net.d` by default.
    pub conf_dir: PathBuf,
    /// Searched in order; `/opt/cni/bin` then Debian's `/usr/lib/cni`.
    pub bin_dirs: Vec<PathBuf>,
    /// `<data-dir>/agent/cni-cache` in the agent.
    pub cache_dir: PathBuf,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            cache_dir: "/var/lib/skiff/agent/cni-cache".into(),
        }
    }
}

pub struct Cni {
    conf_dir: PathBuf,
    plugins: Plugins,
    cache: ResultCache,
}

impl Cni {
    pub fn new(cfg: CniConfig) -> Cni {
        Cni {
            conf_dir: cfg.conf_dir,
            plugins: Plugins {
                bin_dirs: cfg.bin_dirs,
                timeout: DEFAULT_TIMEOUT,
            },
            cache: ResultCache::new(cfg.cache_dir),
        }
    }

    /// Bounds every plugin run by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Cni {
        self.plugins.timeout = timeout;
        self
    }

    /// The network pods would join now: an error while there is no usable
    /// config (the kubelet's NetworkReady=false "cni config uninitialized").
    pub async fn network(&self) -> Result<NetworkConfigList, CniError> {
        Ok(conf::load_dir(&self.conf_dir).await?)
    }

    /// Attaches the sandbox whose network namespace is bind-mounted at
    /// `netns`. On failure whatever was set up is torn down again.
    pub async fn add(&self, pod: &PodNetworkRef, netns: &Path) -> Result<Attachment, CniError> {
        pod.validate()?;
        let ns = netns.to_string_lossy();
        let args = pod.cni_args();
        let list = conf::load_dir(&self.conf_dir).await?;
        let runtime = runtime_config(&pod.port_mappings);
        let added = self
            .run_chain(
                Command::Add,
                &list,
                pod,
                &ns,
                POD_IFNAME,
                &args,
                None,
                &runtime,
            )
            .await
            .and_then(|v| v.ok_or_else(|| bad_output(&list, "the chain printed no result")));
        let attached = match added {
            Ok(result) => self.record(&list, pod, result).await,
            Err(e) => Err(e),
        };
        match attached {
            Ok(a) => Ok(a),
            Err(e) => {
                // Release the address and the veth now rather than leak them.
                let undo = self
                    .run_chain(
                        Command::Del,
                        &list,
                        pod,
                        &ns,
                        POD_IFNAME,
                        &args,
                        None,
                        &runtime,
                    )
                    .await;
                if let Err(u) = undo {
                    tracing::warn!(pod = %pod.name, error = %u, "undoing a failed CNI ADD");
                }
                Err(e)
            }
        }
    }

    /// Parses the chain's result and caches it for DEL and CHECK.
    async fn record(
        &self,
        list: &NetworkConfigList,
        pod: &PodNetworkRef,
        result: Value,
    ) -> Result<Attachment, CniError> {
        let parsed = CniResult::parse(&result).map_err(|r| bad_output(list, &r))?;
        self.cache
            .store(&CachedAttachment {
                kind: cache::KIND.into(),
                container_id: pod.container_id.clone(),
                if_name: POD_IFNAME.into(),
                config: list.raw.clone(),
                port_mappings: pod.port_mappings.clone(),
                result,
            })
            .await?;
        Ok(Attachment::from_result(parsed))
    }

    /// The attachment ADD recorded for this sandbox, if any: how a restarted
    /// agent learns a running pod's IP without attaching it again.
    pub async fn attachment(&self, pod: &PodNetworkRef) -> Result<Option<Attachment>, CniError> {
        pod.validate()?;
        let Some(rec) = self.cache.load(&pod.container_id, POD_IFNAME).await? else {
            return Ok(None);
        };
        let path = self.cache.path(&pod.container_id, POD_IFNAME);
        let parsed =
            CniResult::parse(&rec.result).map_err(|reason| CniError::Cache { path, reason })?;
        Ok(Some(Attachment::from_result(parsed)))
    }

    /// Detaches the sandbox. Idempotent: a sandbox never attached, already
    /// detached, or whose namespace is gone detaches without error.
    pub async fn del(&self, pod: &PodNetworkRef, netns: &Path) -> Result<(), CniError> {
        pod.validate()?;
        let cached = match self.cache.load(&pod.container_id, POD_IFNAME).await {
            Ok(c) => c,
            Err(e) => {
                // The plugins key their state by container id, so DEL with
                // the current config and no prevResult still cleans up.
                tracing::warn!(pod = %pod.name, error = %e, "ignoring unreadable CNI cache");
                None
            }
        };
        let (list, prev, ports) = match cached {
            Some(rec) => match NetworkConfigList::from_value(rec.config) {
                Ok(list) => (Some(list), Some(rec.result), rec.port_mappings),
                Err(reason) => {
                    tracing::warn!(pod = %pod.name, %reason, "ignoring cached CNI config");
                    (None, None, pod.port_mappings.clone())
                }
            },
            None => (None, None, pod.port_mappings.clone()),
        };
        let list = match list {
            Some(l) => Some(l),
            None => match conf::load_dir(&self.conf_dir).await {
                Ok(l) => Some(l),
                // No config and no record: nothing can have been attached.
                Err(ConfError::NoConfig(_)) => None,
                Err(e) => return Err(e.into()),
            },
        };
        // Plugins clean up host-side state (addresses, port mappings) even
        // without the namespace, when told it is gone by an empty CNI_NETNS.
        let ns = if is_netns(netns) {
            netns.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let args = pod.cni_args();
        if let Some(list) = &list {
            let runtime = runtime_config(&ports);
            self.run_chain(
                Command::Del,
                list,
                pod,
                &ns,
                POD_IFNAME,
                &args,
                prev.as_ref(),
                &runtime,
            )
            .await?;
        }
        self.cache.remove(&pod.container_id, POD_IFNAME).await
    }

    /// Asks every plugin whether the attachment is still as ADD left it.
    /// Passes when the network disables CHECK or predates it (< 0.4.0).
    pub async fn check(&self, pod: &PodNetworkRef, netns: &Path) -> Result<(), CniError> {
        pod.validate()?;
        let rec = self
            .cache
            .load(&pod.container_id, POD_IFNAME)
            .await?
            .ok_or_else(|| CniError::NotAttached(pod.container_id.clone()))?;
        let path = self.cache.path(&pod.container_id, POD_IFNAME);
        let list = NetworkConfigList::from_value(rec.config)
            .map_err(|reason| CniError::Cache { path, reason })?;
        if list.disable_check || !conf::version_at_least(&list.cni_version, (0, 4, 0)) {
            return Ok(());
        }
        let ns = netns.to_string_lossy();
        let runtime = runtime_config(&rec.port_mappings);
        let args = pod.cni_args();
        self.run_chain(
            Command::Check,
            &list,
            pod,
            &ns,
            POD_IFNAME,
            &args,
            Some(&rec.result),
            &runtime,
        )
        .await?;
        Ok(())
    }

    /// Runs every plugin of `list` for `command`: in order for ADD (each
    /// getting the previous result) and CHECK, in reverse for DEL (each
    /// getting `prev`). Returns the last ADD result.
    #[allow(clippy::too_many_arguments)]
    async fn run_chain(
        &self,
        command: Command,
        list: &NetworkConfigList,
        pod: &PodNetworkRef,
        netns: &str,
        if_name: &str,
        args: &str,
        prev: Option<&Value>,
        runtime: &Map<String, Value>,
    ) -> Result<Option<Value>, CniError> {
        let inv = Invocation {
            command,
            container_id: &pod.container_id,
            netns,
            if_name,
            args,
        };
        let mut order: Vec<&Map<String, Value>> = list.plugins.iter().collect();
        if command == Command::Del {
            order.reverse();
        }
        let mut result: Option<Value> = prev.cloned();
        for plugin in order {
            let ty = conf::plugin_type(plugin);
            if passes_through(ty, runtime) && (command != Command::Add || result.is_some()) {
                continue;
            }
            let stdin = conf::plugin_config(list, plugin, result.as_ref(), runtime);
            tracing::debug!(plugin = ty, command = command.as_str(), pod = %pod.name, "CNI");
            let out = self.plugins.run(ty, &inv, &stdin).await?;
            if command == Command::Add {
                result = Some(exec::parse_json(ty, command.as_str(), &out)?);
            }
        }
        Ok(if command == Command::Add {
            result
        } else {
            None
        })
    }
}

/// Whether a run of plugin `ty` would change nothing: `portmap` without
/// port mappings hands ADD's previous result on unchanged and has nothing to
/// CHECK or DEL, so most pods are spared two plugin runs. (Ports are
/// immutable in a pod, and DEL gets the mappings ADD had from the cache.)
fn passes_through(ty: &str, runtime: &Map<String, Value>) -> bool {
    ty == "portmap" && !runtime.contains_key("portMappings")
}

/// The runtime values offered to plugins that declare the capability.
fn runtime_config(ports: &[PortMapping]) -> Map<String, Value> {
    let mut rt = Map::new();
    if !ports.is_empty() {
        rt.insert("portMappings".into(), port_mappings_json(ports));
    }
    rt
}

fn bad_output(list: &NetworkConfigList, reason: &str) -> CniError {
    let last = list.plugins.last().map(conf::plugin_type).unwrap_or("");
    CniError::BadOutput {
        plugin: last.to_string(),
        command: "ADD",
        reason: reason.to_string(),
    }
}

/// Whether `path` is a mounted network namespace (nsfs), not just a file
/// left behind after its namespace went away.
fn is_netns(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated and outlives the call; `st` is a
    // plain-data out parameter the kernel fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)]
    let fs_type = st.f_type as i64;
    rc == 0 && fs_type == NSFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portmap_runs_only_for_pods_with_host_ports() {
        let port = PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "TCP".into(),
            host_ip: String::new(),
        };
        assert!(passes_through("portmap", &runtime_config(&[])));
        assert!(!passes_through("portmap", &runtime_config(&[port])));
        assert!(!passes_through("bridge", &runtime_config(&[])));
    }

    #[test]
    fn runtime_config_only_when_there_are_ports() {
        assert!(runtime_config(&[]).is_empty());
        let rt = runtime_config(&[PortMapping {
            host_port: 80,
            container_port: 8080,
            protocol: "UDP".into(),
            host_ip: "127.0.0.1".into(),
        }]);
        assert_eq!(
            Value::Object(rt),
            serde_json::json!({"portMappings": [
                {"hostPort": 80, "containerPort": 8080, "protocol": "udp", "hostIP": "127.0.0.1"}
            ]})
        );
    }

    #[test]
    fn plain_files_are_not_namespaces() {
        assert!(!is_netns(Path::new("/nonexistent/skiff")));
        assert!(!is_netns(Path::new("/proc/self/status")));
        assert!(is_netns(Path::new("/proc/self/ns/net")));
    }
}
