//! Routing between nodes' pod networks, host-gw style: for every other node
//! a route `<its podCIDR> via <its InternalIP>` in the node's namespace,
//! tagged with skiff's own route protocol number so stale ones can be told
//! from everyone else's and removed; plus IP forwarding and the
//! masquerade/forward rules (`masquerade`). The agent calls [`NodeRoutes::sync`]
//! whenever Node objects change.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::cidr::{Cidr, InvalidCidr};
use super::cmd::{self, CommandError};
use super::masquerade;

/// skiff's route protocol (`ip route … proto 115`); unassigned in
/// iproute2's rt_protos.
pub const ROUTE_PROTO: u8 = 115;

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("{what} {source}")]
    Cidr {
        what: &'static str,
        source: InvalidCidr,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("enabling forwarding ({path}): {source}")]
    Forwarding {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("unexpected `ip route` output: {0}")]
    Parse(String),
    #[error("{failed} node route change(s) failed; the first: {first}")]
    Routes {
        failed: usize,
        first: Box<CommandError>,
    },
}

/// The node's pod-network routing. Holds no state: the kernel's routes and
/// rules are the state, read back on every sync.
#[derive(Debug, Default)]
pub struct NodeRoutes {}

impl NodeRoutes {
    pub fn new() -> NodeRoutes {
        NodeRoutes {}
    }

    /// Makes the node's routing match: forwarding on, the masquerade and
    /// forward rules for `local_pod_cidr` within `cluster_cidr` (a list
    /// like `10.244.0.0/16,fd00::/48` is fine; the local family's entry is
    /// used, and the local podCIDR when there is none), and one route per
    /// peer `(podCIDR, InternalIP)`. Peers that cannot be routed (unparsable,
    /// mixed families, this node's own range) are skipped with a warning.
    pub async fn sync(
        &self,
        local_pod_cidr: &str,
        cluster_cidr: &str,
        peers: &[(String, String)],
    ) -> Result<(), RoutesError> {
        let local: Cidr = local_pod_cidr.parse().map_err(|source| RoutesError::Cidr {
            what: "local pod CIDR:",
            source,
        })?;
        let cluster = pick_cluster_cidr(cluster_cidr, &local);
        enable_forwarding(local.is_ipv4())?;
        masquerade::apply(&local, &cluster).await?;
        let want = desired_routes(&local, peers);
        let have = installed_routes().await?;
        let mut failed = Vec::new();
        for (dst, gw) in &want {
            if have.get(dst) == Some(&Some(*gw)) {
                continue;
            }
            let (dst, gw, proto) = (dst.to_string(), gw.to_string(), ROUTE_PROTO.to_string());
            let args = ["route", "replace", &dst, "via", &gw, "proto", &proto];
            if let Err(e) = cmd::run("ip", &args, None).await {
                failed.push(e);
            }
        }
        for dst in have.keys().filter(|d| !want.contains_key(d)) {
            if let Err(e) = delete_route(dst).await {
                failed.push(e);
            }
        }
        first_failure(failed)
    }

    /// Removes every route and chain skiff added (forwarding stays on:
    /// something else may rely on it).
    pub async fn cleanup(&self) -> Result<(), RoutesError> {
        let mut failed = Vec::new();
        for dst in installed_routes().await?.keys() {
            if let Err(e) = delete_route(dst).await {
                failed.push(e);
            }
        }
        if let Err(e) = masquerade::remove().await {
            failed.push(e);
        }
        first_failure(failed)
    }
}

fn first_failure(mut failed: Vec<CommandError>) -> Result<(), RoutesError> {
    if failed.is_empty() {
        return Ok(());
    }
    let failed_count = failed.len();
    Err(RoutesError::Routes {
        failed: failed_count,
        first: Box::new(failed.swap_remove(0)),
    })
}

async fn delete_route(dst: &Cidr) -> Result<(), CommandError> {
    let (dst, proto) = (dst.to_string(), ROUTE_PROTO.to_string());
    cmd::run("ip", &["route", "del", &dst, "proto", &proto], None)
        .await
        .map(drop)
}

/// The cluster range of the local family, else the local range itself (so
/// at least pod-to-pod traffic on this node is never masqueraded).
fn pick_cluster_cidr(cluster_cidr: &str, local: &Cidr) -> Cidr {
    cluster_cidr
        .split(',')
        .filter_map(|c| c.parse::<Cidr>().ok())
        .find(|c| c.is_ipv4() == local.is_ipv4())
        .unwrap_or(*local)
}

/// The routes the peers call for: podCIDR → InternalIP, first claim wins.
pub(crate) fn desired_routes(local: &Cidr, peers: &[(String, String)]) -> BTreeMap<Cidr, IpAddr> {
    let mut want = BTreeMap::new();
    for (cidr, ip) in peers {
        let (Ok(dst), Ok(gw)) = (cidr.parse::<Cidr>(), ip.parse::<IpAddr>()) else {
            tracing::warn!(%cidr, %ip, "skipping a node whose pod CIDR or address does not parse");
            continue;
        };
        if dst.is_ipv4() != gw.is_ipv4() || dst == *local || dst.prefix_len() == 0 {
            tracing::warn!(%cidr, %ip, "skipping a node route that cannot be installed");
            continue;
        }
        want.entry(dst).or_insert(gw);
    }
    want
}

/// Routes with skiff's protocol in the main table, both families.
async fn installed_routes() -> Result<BTreeMap<Cidr, Option<IpAddr>>, RoutesError> {
    let proto = ROUTE_PROTO.to_string();
    let mut have = BTreeMap::new();
    for family in ["-4", "-6"] {
        let out = cmd::run(
            "ip",
            &["-j", family, "route", "show", "proto", &proto],
            None,
        )
        .await?;
        have.extend(parse_routes(&out)?);
    }
    Ok(have)
}

/// `ip -j route` output → destination → gateway.
fn parse_routes(json: &str) -> Result<Vec<(Cidr, Option<IpAddr>)>, RoutesError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let routes: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| RoutesError::Parse(e.to_string()))?;
    let mut out = Vec::new();
    for r in routes {
        let Some(dst) = r.get("dst").and_then(|d| d.as_str()) else {
            continue;
        };
        // A host route prints without its /32 or /128.
        let cidr = match dst.parse::<Cidr>() {
            Ok(c) => c,
            Err(_) => match dst.parse::<IpAddr>() {
                Ok(ip) => Cidr::host(ip),
                Err(_) => return Err(RoutesError::Parse(format!("destination {dst:?}"))),
            },
        };
        let gw = r
            .get("gateway")
            .and_then(|g| g.as_str())
            .and_then(|g| g.parse().ok());
        out.push((cidr, gw));
    }
    Ok(out)
}

/// Turns on forwarding for the family. Written directly, not through a
/// blocking-pool thread: net sysctls act on the writing thread's network
/// namespace, which must be the caller's.
fn enable_forwarding(ipv4: bool) -> Result<(), RoutesError> {
    let path = if ipv4 {
        "/proc/sys/net/ipv4/ip_forward"
    } else {
        "/proc/sys/net/ipv6/conf/all/forwarding"
    };
    let err = |source| RoutesError::Forwarding { path, source };
    if std::fs::read_to_string(path).map_err(err)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(c, i)| (c.to_string(), i.to_string()))
            .collect()
    }

    #[test]
    fn desired_routes_skip_what_cannot_be_routed() {
        let local: Cidr = "10.244.7.0/24".parse().unwrap();
        let want = desired_routes(
            &local,
            &peers(&[
                ("10.244.8.0/24", "192.168.5.3"),
                ("10.244.7.0/24", "192.168.5.2"),
                ("10.244.9.0/24", "fd00::3"),
                ("garbage", "192.168.5.4"),
                ("10.244.10.0/24", "-x"),
                ("0.0.0.0/0", "192.168.5.5"),
                ("10.244.8.0/24", "192.168.5.6"),
            ]),
        );
        let want: Vec<String> = want.iter().map(|(c, g)| format!("{c} via {g}")).collect();
        assert_eq!(want, vec!["10.244.8.0/24 via 192.168.5.3"]);
    }

    #[test]
    fn cluster_cidr_of_the_local_family() {
        let local: Cidr = "10.244.7.0/24".parse().unwrap();
        assert_eq!(
            pick_cluster_cidr("fd00::/48,10.244.0.0/16", &local).to_string(),
            "10.244.0.0/16"
        );
        assert_eq!(pick_cluster_cidr("", &local), local);
        assert_eq!(pick_cluster_cidr("fd00::/48", &local), local);
    }

    #[test]
    fn parses_ip_route_json() {
        let out = r#"[{"dst":"10.244.8.0/24","gateway":"10.99.0.4","dev":"v0","flags":[]},
                      {"dst":"10.244.9.5","gateway":"10.99.0.4","dev":"v0","flags":[]},
                      {"dst":"10.244.10.0/24","dev":"v0","flags":[]}]"#;
        let r = parse_routes(out).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].0.to_string(), "10.244.9.5/32");
        assert_eq!(r[0].1, Some("10.99.0.4".parse().unwrap()));
        assert_eq!(r[2].1, None);
        assert!(parse_routes("").unwrap().is_empty());
        assert!(parse_routes("[{\"dst\":\"nope\"}]").is_err());
    }
}
