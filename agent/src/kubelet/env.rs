//! A container's environment as kubelet builds it: the Service link
//! variables (`<SVC>_SERVICE_HOST`, docker-style `<SVC>_PORT_…`), then
//! `envFrom` sources, then `env` entries in order (`$(VAR)` expanded against
//! what came before, `valueFrom` config map and secret keys, downward-API
//! fields and resource amounts), laid over the image's own environment.

use crate::runtime::bundle::expand;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use skiff_machinery::quantity::Quantity;
use std::collections::BTreeMap;

/// The objects a container's environment may read, fetched beforehand.
#[derive(Default)]
pub struct Sources {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// Services of the pod's namespace, and `kubernetes` of `default`.
    pub services: Vec<Service>,
    /// The node's allocatable cpu and memory, for limits the container lacks.
    pub node_allocatable: BTreeMap<String, String>,
}

/// Which config maps and secrets `container` reads (by name).
pub fn referenced(container: &Container) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (Vec::new(), Vec::new());
    for e in container.env_from.iter().flatten() {
        cms.extend(e.config_map_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(e.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for e in container.env.iter().flatten() {
        if let Some(v) = &e.value_from {
            cms.extend(v.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(v.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// An ordered environment where a later value for a name replaces the earlier.
#[derive(Default)]
struct Env(Vec<(String, String)>);

impl Env {
    fn set(&mut self, k: String, v: String) {
        match self.0.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k, v)),
        }
    }
    fn get(&self, k: &str) -> Option<String> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The container's environment (`NAME=value`), or the message upstream
/// gives for CreateContainerConfigError.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    image_env: &[String],
    sources: &Sources,
) -> Result<Vec<String>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.clone().unwrap_or_default();
    let mut env = Env::default();
    let links = spec.enable_service_links.unwrap_or(true);
    for svc in &sources.services {
        let svc_ns = svc.metadata.namespace.as_deref().unwrap_or("");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let is_master = svc_ns == "default" && name == "kubernetes";
        if (svc_ns == ns && links) || is_master {
            for (k, v) in service_vars(svc) {
                env.set(k, v);
            }
        }
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data: BTreeMap<String, String> = if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(cm) => cm.data.clone().unwrap_or_default(),
                None if r.optional == Some(true) => continue,
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(s) => secret_strings(s),
                None if r.optional == Some(true) => continue,
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let key = format!("{prefix}{k}");
            if is_env_name(&key) {
                env.set(key, v);
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = match &e.value_from {
            None => {
                let v = e.value.clone().unwrap_or_default();
                expand(&v, &|name| env.get(name))
            }
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    match sources.config_maps.get(&r.name) {
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    r.key, r.name
                                ))
                            }
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("configmap \"{}\" not found", r.name)),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    match sources.secrets.get(&r.name) {
                        Some(s) => match secret_strings(s).remove(&r.key) {
                            Some(v) => v,
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {ns}/{}",
                                    r.key, r.name
                                ))
                            }
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("secret \"{}\" not found", r.name)),
                    }
                } else if let Some(f) = &from.field_ref {
                    field(pod, &f.field_path)?
                } else if let Some(r) = &from.resource_field_ref {
                    let c = match &r.container_name {
                        Some(n) if !n.is_empty() => spec
                            .containers
                            .iter()
                            .chain(spec.init_containers.iter().flatten())
                            .find(|c| &c.name == n)
                            .ok_or_else(|| format!("container {n} not found"))?,
                        _ => container,
                    };
                    resource_field(c, &r.resource, r.divisor.as_ref(), sources)?
                } else {
                    continue;
                }
            }
        };
        env.set(e.name.clone(), value);
    }
    // The image's environment underneath; the container's wins.
    let mut out = Env::default();
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        out.set(k.to_string(), v.to_string());
    }
    for (k, v) in env.0 {
        out.set(k, v);
    }
    Ok(out.0.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn secret_strings(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    out.extend(s.string_data.clone().unwrap_or_default());
    out
}

/// Docker-link style variables for one Service (only with a cluster IP).
fn service_vars(svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = &svc.spec else { return vec![] };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    if ip.is_empty() || ip == "None" {
        return vec![];
    }
    let name = svc
        .metadata
        .name
        .as_deref()
        .unwrap_or("")
        .to_uppercase()
        .replace('-', "_");
    let ports = spec.ports.clone().unwrap_or_default();
    let mut vars = vec![(format!("{name}_SERVICE_HOST"), ip.clone())];
    if let Some(first) = ports.first() {
        vars.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        let proto = first.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        vars.push((
            format!("{name}_PORT"),
            format!("{proto}://{ip}:{}", first.port),
        ));
    }
    for p in &ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let pn = pn.to_uppercase().replace('-', "_");
            vars.push((format!("{name}_SERVICE_PORT_{pn}"), p.port.to_string()));
        }
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
        let lower = proto.to_lowercase();
        vars.push((prefix.clone(), format!("{lower}://{ip}:{}", p.port)));
        vars.push((format!("{prefix}_PROTO"), lower));
        vars.push((format!("{prefix}_PORT"), p.port.to_string()));
        vars.push((format!("{prefix}_ADDR"), ip.clone()));
    }
    vars
}

/// A downward-API field of the pod.
pub fn field(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let ips = |v: Option<Vec<String>>| v.unwrap_or_default().join(",");
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_default(),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        "status.hostIPs" => ips(status
            .host_ips
            .map(|v| v.into_iter().map(|i| i.ip).collect())),
        "status.podIPs" => ips(status
            .pod_ips
            .map(|v| v.into_iter().map(|i| i.ip).collect())),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        p if p.starts_with("metadata.labels[") => keyed("metadata.labels", meta.labels.as_ref())
            .ok_or_else(|| format!("unsupported fieldPath: {p}"))?,
        p if p.starts_with("metadata.annotations[") => {
            keyed("metadata.annotations", meta.annotations.as_ref())
                .ok_or_else(|| format!("unsupported fieldPath: {p}"))?
        }
        p => return Err(format!("unsupported fieldPath: {p}")),
    })
}

/// Labels or annotations as the downward API writes them: `k="v"` lines, sorted.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `limits.cpu`, `requests.memory`, … divided by `divisor`, rounded up as
/// upstream does; a missing limit is the node's allocatable amount.
pub fn resource_field(
    c: &Container,
    resource: &str,
    divisor: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    sources: &Sources,
) -> Result<String, String> {
    let res = c.resources.clone().unwrap_or_default();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {resource}"))?;
    let list = match kind {
        "limits" => res.limits.unwrap_or_default(),
        "requests" => res.requests.unwrap_or_default(),
        _ => return Err(format!("unsupported container resource: {resource}")),
    };
    let amount = list
        .get(name)
        .map(|q| q.0.clone())
        .or_else(|| {
            (kind == "limits")
                .then(|| sources.node_allocatable.get(name).cloned())
                .flatten()
        })
        .unwrap_or_else(|| "0".into());
    let amount = Quantity::parse(&amount).map_err(|e| e.to_string())?.millis;
    let default_divisor = "1".to_string();
    let divisor = divisor.map(|d| &d.0).unwrap_or(&default_divisor);
    let divisor = Quantity::parse(divisor)
        .map_err(|e| e.to_string())?
        .millis
        .max(1);
    // Rounded up; cpu at least 1 (upstream's ConvertResourceCPUToString).
    let mut v = (amount + divisor - 1) / divisor;
    if name == "cpu" && v == 0 && amount > 0 {
        v = 1;
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c",
                "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "$(A)-$(CFG_MODE)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "PATH", "value": "/custom"},
                ]}]},
            "status": {"podIP": "10.42.0.9"},
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.config_maps.insert(
            "cfg".into(),
            serde_json::from_value(json!({"data": {"MODE": "fast", "bad key": "x"}})).unwrap(),
        );
        s.secrets.insert(
            "s".into(),
            serde_json::from_value(json!({"data": {"pw": "aHVudGVyMg=="}})).unwrap(),
        );
        s.services.push(serde_json::from_value(json!({"metadata": {"name": "web-api", "namespace": "shop"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})).unwrap());
        s.services.push(serde_json::from_value(json!({"metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}})).unwrap());
        s
    }

    #[test]
    fn builds_the_environment() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env = resolve(
            &p,
            c,
            &["PATH=/bin".into(), "HOME=/root".into()],
            &sources(),
        )
        .unwrap();
        let get = |k: &str| {
            env.iter()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        assert_eq!(get("PATH").as_deref(), Some("/custom"));
        assert_eq!(get("HOME").as_deref(), Some("/root"));
        assert_eq!(get("CFG_MODE").as_deref(), Some("fast"));
        assert_eq!(get("B").as_deref(), Some("1-fast"));
        assert_eq!(get("POD").as_deref(), Some("p"));
        assert_eq!(get("APP").as_deref(), Some("web"));
        assert_eq!(get("PASS").as_deref(), Some("hunter2"));
        assert_eq!(get("CPU").as_deref(), Some("1"));
        assert_eq!(get("MEM").as_deref(), Some("64"));
        assert_eq!(get("WEB_API_SERVICE_HOST").as_deref(), Some("10.43.0.20"));
        assert_eq!(get("WEB_API_SERVICE_PORT_HTTP").as_deref(), Some("80"));
        assert_eq!(
            get("WEB_API_PORT_80_TCP").as_deref(),
            Some("tcp://10.43.0.20:80")
        );
        assert_eq!(get("KUBERNETES_SERVICE_HOST").as_deref(), Some("10.43.0.1"));
        assert!(get("CFG_bad key").is_none());
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let err = resolve(&p, c, &[], &Sources::default()).unwrap_err();
        assert_eq!(err, "configmap \"cfg\" not found");
    }
}
