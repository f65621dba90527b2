//! What plugins print: the ADD result (interfaces, IPs, routes, DNS; the
//! 0.3/0.4/1.0 shape, and the older `ip4`/`ip6` one converted to it), the
//! error object, and the pod's addresses picked out of a result.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The netns path when the interface is inside the sandbox; empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.244.7.2/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The error object a failing plugin prints on stdout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PluginErrorBody {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

/// A pre-0.3 result: one `ip4` and one `ip6` block.
#[derive(Deserialize)]
struct Legacy {
    #[serde(default, rename = "cniVersion")]
    cni_version: String,
    ip4: Option<LegacyIp>,
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: String,
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl CniResult {
    /// Parses any result version the spec has had.
    pub fn parse(value: &Value) -> Result<CniResult, String> {
        if value.get("ip4").is_some() || value.get("ip6").is_some() {
            let old: Legacy = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
            let mut r = CniResult {
                cni_version: old.cni_version,
                dns: old.dns,
                ..CniResult::default()
            };
            for ip in [old.ip4, old.ip6].into_iter().flatten() {
                r.ips.push(IpConfig {
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                r.routes.extend(ip.routes);
            }
            return Ok(r);
        }
        let r: CniResult = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        for ip in &r.ips {
            split_address(&ip.address)?;
        }
        Ok(r)
    }

    /// The pod's own addresses, IPv4 first, each with its gateway: those on
    /// an interface inside the sandbox, or all when the plugin names none.
    pub fn pod_ips(&self) -> Vec<(IpAddr, u8, Option<IpAddr>)> {
        let in_sandbox = |ip: &&IpConfig| match ip.interface {
            Some(i) => self
                .interfaces
                .get(i)
                .is_some_and(|x| !x.sandbox.is_empty()),
            None => true,
        };
        let mut out: Vec<_> = self
            .ips
            .iter()
            .filter(in_sandbox)
            .filter_map(|ip| {
                let (addr, len) = split_address(&ip.address).ok()?;
                Some((addr, len, ip.gateway))
            })
            .collect();
        // Stable: keeps the plugin's order within a family.
        out.sort_by_key(|(a, _, _)| !a.is_ipv4());
        out
    }
}

/// `10.244.7.2/24` → (address, prefix length).
pub fn split_address(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("bad address {s:?} in result");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let a: IpAddr = a.parse().map_err(|_| bad())?;
    let l: u8 = l.parse().map_err(|_| bad())?;
    if l > if a.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    Ok((a, l))
}

/// The pod's side of a successful ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The pod's IPs, IPv4 first (status.podIPs order).
    pub ips: Vec<IpAddr>,
    /// The gateway of the first IP that has one.
    pub gateway: Option<IpAddr>,
    /// The whole result of the chain's last plugin.
    pub result: CniResult,
}

impl Attachment {
    pub fn from_result(result: CniResult) -> Attachment {
        let ips = result.pod_ips();
        Attachment {
            gateway: ips.iter().find_map(|(_, _, g)| *g),
            ips: ips.into_iter().map(|(a, _, _)| a).collect(),
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the bridge plugin (then portmap) prints for a pod.
    fn bridge_result() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "skiff0", "mac": "aa:bb:cc:00:00:01"},
                {"name": "veth1234", "mac": "aa:bb:cc:00:00:02"},
                {"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/run/netns/pod"}
            ],
            "ips": [
                {"interface": 2, "address": "fd00:1::5/64", "gateway": "fd00:1::1"},
                {"interface": 2, "address": "10.244.7.2/24", "gateway": "10.244.7.1"},
                {"interface": 0, "address": "10.244.7.1/24"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["cluster.local"]}
        })
    }

    #[test]
    fn parses_a_1_0_result_and_picks_the_pods_ips_v4_first() {
        let r = CniResult::parse(&bridge_result()).unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.routes[0].dst, "0.0.0.0/0");
        assert_eq!(r.dns.nameservers, vec!["10.96.0.10"]);
        let a = Attachment::from_result(r);
        assert_eq!(
            a.ips,
            vec![
                "10.244.7.2".parse::<IpAddr>().unwrap(),
                "fd00:1::5".parse().unwrap()
            ],
            "the bridge's own address is on the host, not the pod's"
        );
        assert_eq!(a.gateway, Some("10.244.7.1".parse().unwrap()));
    }

    #[test]
    fn converts_a_0_2_result() {
        let v = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "dns": {}
        });
        let a = Attachment::from_result(CniResult::parse(&v).unwrap());
        assert_eq!(a.ips, vec!["10.1.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(a.gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(a.result.routes.len(), 1);
    }

    #[test]
    fn rejects_garbage_addresses() {
        for addr in ["10.1.0.5", "10.1.0.5/33", "x/24"] {
            let v = json!({"cniVersion": "1.0.0", "ips": [{"address": addr}]});
            assert!(CniResult::parse(&v).is_err(), "{addr}");
        }
        assert!(CniResult::parse(&json!({"ips": "nope"})).is_err());
    }

    #[test]
    fn parses_the_error_object() {
        let e: PluginErrorBody = serde_json::from_value(json!({
            "cniVersion": "1.0.0", "code": 7, "msg": "invalid network config", "details": "bridge: x"
        }))
        .unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "invalid network config");
        assert_eq!(e.details, "bridge: x");
    }
}
