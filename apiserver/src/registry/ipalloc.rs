//! Service ClusterIP and NodePort allocation. What is in use is read from the
//! services watch cache (so it survives restarts with no bitmap of its own),
//! plus a short-lived set of allocations not yet visible there.

use super::Registry;
use crate::error::{ApiError, Cause};
use crate::meta;
use serde_json::{json, Value};
use skiff_machinery::catalog;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);
const PENDING_TTL: Duration = Duration::from_secs(30);

pub struct ServiceAllocator {
    base: u32,
    size: u32,
    cidr: String,
    pending_ips: Mutex<HashMap<u32, Instant>>,
    pending_ports: Mutex<HashMap<u16, Instant>>,
}

fn services() -> &'static catalog::Resource {
    catalog::lookup("", "v1", "services").expect("services in catalog")
}

fn svc_res_invalid(obj: &Value, cause: Cause) -> ApiError {
    ApiError::invalid(services(), meta::name(obj), vec![cause])
}

impl ServiceAllocator {
    pub fn new(cidr: &str) -> anyhow::Result<Self> {
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("service CIDR {cidr:?} is not a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip.parse()?;
        let bits: u32 = bits.parse()?;
        anyhow::ensure!(
            (8..=30).contains(&bits),
            "service CIDR prefix must be between /8 and /30"
        );
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip) & !(size - 1);
        Ok(Self {
            base,
            size,
            cidr: cidr.into(),
            pending_ips: Mutex::default(),
            pending_ports: Mutex::default(),
        })
    }

    /// The first usable address: the `kubernetes` Service's ClusterIP.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The addresses and ports Services hold, read consistently: a port an
    /// update just gave up is free for the next create, however far behind
    /// the cache is.
    async fn in_use(&self, reg: &Registry) -> (HashSet<u32>, HashSet<u16>) {
        let items = match reg.list(services(), None, &Default::default()).await {
            Ok(list) => list.items,
            Err(_) => reg.cache(services()).list(&services().key_prefix()).0,
        };
        let mut ips = HashSet::new();
        let mut ports = HashSet::new();
        for e in items {
            let svc = e.object();
            if let Some(ip) = svc
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
            {
                ips.insert(u32::from(ip));
            }
            for p in svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                    ports.insert(n as u16);
                }
            }
            if let Some(n) = health_check_port(&svc) {
                ports.insert(n);
            }
        }
        let now = Instant::now();
        let mut pi = self.pending_ips.lock().expect("lock");
        pi.retain(|_, t| now.duration_since(*t) < PENDING_TTL);
        ips.extend(pi.keys());
        let mut pp = self.pending_ports.lock().expect("lock");
        pp.retain(|_, t| now.duration_since(*t) < PENDING_TTL);
        ports.extend(pp.keys());
        (ips, ports)
    }

    fn pick_ip(
        &self,
        used: &HashSet<u32>,
        requested: Option<&str>,
        obj: &Value,
    ) -> Result<u32, ApiError> {
        if let Some(req) = requested {
            let bad = |msg: String| {
                svc_res_invalid(obj, Cause::invalid("spec.clusterIPs[0]", &json!(req), msg))
            };
            let ip: Ipv4Addr = req.parse().map_err(|_| {
                bad("must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into())
            })?;
            let n = u32::from(ip);
            if n <= self.base || n >= self.base + self.size - 1 {
                return Err(bad(format!("failed to allocate IP {req}: provided IP is not in the valid range. The range of valid IPs is {}", self.cidr)));
            }
            if used.contains(&n) {
                return Err(bad(format!(
                    "failed to allocate IP {req}: provided IP is already allocated"
                )));
            }
            return Ok(n);
        }
        use rand::Rng;
        let mut rng = rand::rng();
        // Random probes first (as upstream), then a scan so a full range is found.
        for _ in 0..64 {
            let n = self.base + 2 + rng.random_range(0..self.size.saturating_sub(3).max(1));
            if !used.contains(&n) {
                return Ok(n);
            }
        }
        (self.base + 2..self.base + self.size - 1)
            .find(|n| !used.contains(n))
            .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))
    }

    fn pick_port(&self, used: &HashSet<u16>) -> Result<u16, ApiError> {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..64 {
            let p = rng.random_range(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1);
            if !used.contains(&p) {
                return Ok(p);
            }
        }
        (NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1)
            .find(|p| !used.contains(p))
            .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))
    }

    /// Fills spec.clusterIP(s) and node ports of a new Service.
    pub async fn allocate(&self, reg: &Registry, obj: &mut Value) -> Result<(), ApiError> {
        let (mut used_ips, mut used_ports) = self.in_use(reg).await;
        let ty = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let requested = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        if ty != "ExternalName" {
            let ip = if requested.as_deref() == Some("None") {
                "None".to_string()
            } else {
                let n = self.pick_ip(&used_ips, requested.as_deref(), obj)?;
                used_ips.insert(n);
                self.pending_ips
                    .lock()
                    .expect("lock")
                    .insert(n, Instant::now());
                Ipv4Addr::from(n).to_string()
            };
            let spec = obj["spec"].as_object_mut().expect("spec defaulted");
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
            spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
            spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            self.assign_ports(obj, &mut used_ports, None)?;
        }
        self.assign_health_check_port(obj, &mut used_ports, None)?;
        Ok(())
    }

    /// Marks `port` taken, also for allocations not yet in the cache.
    fn reserve_port(&self, used: &mut HashSet<u16>, port: u16) {
        used.insert(port);
        self.pending_ports
            .lock()
            .expect("lock")
            .insert(port, Instant::now());
    }

    /// spec.healthCheckNodePort, which a LoadBalancer Service with
    /// externalTrafficPolicy Local needs (and no other may have): the one
    /// given, the one it had, or a free one. Once set it stays.
    fn assign_health_check_port(
        &self,
        obj: &mut Value,
        used: &mut HashSet<u16>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let given = health_check_port(obj);
        let kept = old
            .filter(|o| needs_health_check(o))
            .and_then(health_check_port);
        let field = "spec.healthCheckNodePort";
        if !needs_health_check(obj) {
            match (given, old) {
                // Updates drop it with the need for it; it is free at once.
                (Some(g), Some(_)) => {
                    self.pending_ports.lock().expect("lock").remove(&g);
                    obj["spec"]
                        .as_object_mut()
                        .map(|s| s.remove("healthCheckNodePort"));
                }
                (Some(g), None) => {
                    return Err(svc_res_invalid(obj, Cause::invalid(field, &json!(g),
                        "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'")));
                }
                (None, _) => {}
            }
            return Ok(());
        }
        let port = match (given, kept) {
            (Some(g), Some(k)) if g != k => {
                return Err(svc_res_invalid(
                    obj,
                    Cause::invalid(field, &json!(g), "field is immutable"),
                ));
            }
            (_, Some(k)) => k,
            (Some(g), None) => check_requested_port(obj, field, g, used)?,
            (None, None) => self.pick_port(used)?,
        };
        self.reserve_port(used, port);
        obj["spec"]["healthCheckNodePort"] = json!(port);
        Ok(())
    }

    fn assign_ports(
        &self,
        obj: &mut Value,
        used: &mut HashSet<u16>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let old_ports: Vec<Value> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Errors name the Service (`obj` is borrowed for its ports).
        let named = json!({"metadata": {"name": meta::name(obj)}});
        let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for (i, p) in ports.iter_mut().enumerate() {
            let given = p.get("nodePort").and_then(Value::as_u64).map(|n| n as u16);
            let kept = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"))
                .and_then(|o| o.get("nodePort"))
                .and_then(Value::as_u64)
                .map(|n| n as u16);
            let port = match (given, kept) {
                (Some(g), Some(k)) if g == k => continue,
                (None, Some(k)) => {
                    p["nodePort"] = json!(k);
                    continue;
                }
                (Some(g), _) => {
                    check_requested_port(&named, &format!("spec.ports[{i}].nodePort"), g, used)?
                }
                (None, None) => self.pick_port(used)?,
            };
            self.reserve_port(used, port);
            p["nodePort"] = json!(port);
        }
        Ok(())
    }

    /// ClusterIP is immutable; node ports are kept for ports that stay.
    pub async fn keep_on_update(
        &self,
        reg: &Registry,
        old: &Value,
        new: &mut Value,
    ) -> Result<(), ApiError> {
        let old_ip = old.pointer("/spec/clusterIP").cloned();
        let new_ip = new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        let ty = new
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            match (&old_ip, new_ip) {
                (Some(o), None) => {
                    spec.insert("clusterIP".into(), o.clone());
                    if let Some(ips) = old.pointer("/spec/clusterIPs") {
                        spec.insert("clusterIPs".into(), ips.clone());
                    }
                }
                (Some(o), Some(n)) if o.as_str() != Some(n.as_str()) && ty != "ExternalName" => {
                    return Err(svc_res_invalid(
                        new,
                        Cause::invalid("spec.clusterIPs[0]", &json!(n), "may not change once set"),
                    ));
                }
                _ => {}
            }
            for key in ["ipFamilies", "ipFamilyPolicy"] {
                if spec.get(key).is_none() {
                    if let Some(v) = old.pointer(&format!("/spec/{key}")) {
                        spec.insert(key.into(), v.clone());
                    }
                }
            }
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            let (_, mut used) = self.in_use(reg).await;
            for p in old
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                    used.remove(&(n as u16));
                }
            }
            if let Some(n) = health_check_port(old) {
                used.remove(&n);
            }
            self.assign_ports(new, &mut used, Some(old))?;
            self.assign_health_check_port(new, &mut used, Some(old))?;
        } else {
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("healthCheckNodePort");
            }
        }
        Ok(())
    }

    /// Forgets pending allocations of a Service that was not stored or is gone;
    /// stored usage is read from the cache, so nothing else is kept.
    pub fn release(&self, obj: &Value) {
        if let Some(ip) = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            self.pending_ips
                .lock()
                .expect("lock")
                .remove(&u32::from(ip));
        }
        let mut pending = self.pending_ports.lock().expect("lock");
        for p in obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                pending.remove(&(n as u16));
            }
        }
        if let Some(n) = health_check_port(obj) {
            pending.remove(&n);
        }
    }
}

/// A node port a Service asks for (`field`), if it is in the range and free.
fn check_requested_port(
    svc: &Value,
    field: &str,
    port: u16,
    used: &HashSet<u16>,
) -> Result<u16, ApiError> {
    if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&port) {
        return Err(svc_res_invalid(
            svc,
            Cause::invalid(
                field,
                &json!(port),
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                ),
            ),
        ));
    }
    if used.contains(&port) {
        return Err(svc_res_invalid(
            svc,
            Cause::invalid(field, &json!(port), "provided port is already allocated"),
        ));
    }
    Ok(port)
}

fn health_check_port(svc: &Value) -> Option<u16> {
    svc.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_u64)
        .filter(|n| *n != 0)
        .map(|n| n as u16)
}

/// A LoadBalancer Service keeping its clients' addresses (upstream's
/// `NeedsHealthCheck`).
fn needs_health_check(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
        && svc
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}
