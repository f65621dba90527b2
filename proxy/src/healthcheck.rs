//! kube-proxy's service health checks: every LoadBalancer Service with
//! `externalTrafficPolicy: Local` has a `healthCheckNodePort`, and each node
//! answers HTTP there — 200 while it has ready endpoints of the Service, 503
//! when it has none — so an external load balancer sends traffic only to
//! nodes that keep it (the Local policy drops it elsewhere).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use crate::model;

/// What one health check port reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

/// The health check each port should answer, from the caches' state:
/// ready endpoints on `node` per Service (the most of any of its ports).
pub fn wanted(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node: &str,
) -> HashMap<u16, Check> {
    let checked: Vec<(&Service, u16)> = services
        .iter()
        .filter_map(|svc| {
            let spec = svc.spec.as_ref()?;
            let port = spec.health_check_node_port.filter(|p| *p > 0)?;
            (spec.type_.as_deref() == Some("LoadBalancer")
                && spec.external_traffic_policy.as_deref() == Some("Local"))
            .then_some((&**svc, port as u16))
        })
        .collect();
    if checked.is_empty() {
        return HashMap::new();
    }
    let by_service = crate::sync::slices_by_service(slices);
    let mut out = HashMap::new();
    for (svc, port) in checked {
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let slices = by_service
            .get(&(namespace.as_str(), name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let local_endpoints = [true, false]
            .into_iter()
            .flat_map(|ipv4| model::service_ports(svc, slices, node, ipv4))
            .map(|sp| sp.local_endpoints().len())
            .max()
            .unwrap_or(0);
        out.insert(
            port,
            Check {
                namespace,
                name,
                local_endpoints,
            },
        );
    }
    out
}

/// The status line and body of a check, as kube-proxy's.
fn page(check: Option<&Check>) -> (&'static str, String) {
    let Some(c) = check else {
        return ("503 Service Unavailable", String::new());
    };
    let body = json!({
        "service": {"namespace": c.namespace, "name": c.name},
        "localEndpoints": c.local_endpoints,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let status = if c.local_endpoints > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (status, body)
}

/// The running health check servers, one per port.
#[derive(Default)]
pub struct HealthChecks {
    state: Arc<Mutex<HashMap<u16, Check>>>,
    servers: HashMap<u16, tokio::task::AbortHandle>,
}

impl HealthChecks {
    /// Answers `wanted` from now on: servers start on new ports and stop on
    /// ports no longer wanted.
    pub fn update(&mut self, wanted: HashMap<u16, Check>) {
        self.servers.retain(|port, task| {
            let keep = wanted.contains_key(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for port in wanted.keys() {
            if self.servers.contains_key(port) {
                continue;
            }
            let state = self.state.clone();
            let port = *port;
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let task = tokio::spawn(async move {
                let served = skiff_machinery::plain_http::serve(addr, move |_path| {
                    Some(page(state.lock().expect("lock").get(&port)))
                });
                if let Err(e) = served.await {
                    tracing::warn!(%addr, error = %e, "service health check not served");
                }
            });
            self.servers.insert(port, task.abort_handle());
        }
        *self.state.lock().expect("lock") = wanted;
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for task in self.servers.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ty: &str, policy: &str, hc: Option<i32>) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "ns", "name": "web"},
                "spec": {"type": ty, "externalTrafficPolicy": policy, "healthCheckNodePort": hc,
                         "clusterIP": "10.43.0.5", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}
            }))
            .unwrap(),
        )
    }

    fn slice(nodes: &[&str]) -> Arc<EndpointSlice> {
        let endpoints: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"addresses": [format!("10.42.0.{}", i + 2)], "conditions": {"ready": true}, "nodeName": n}))
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "ns", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}], "endpoints": endpoints,
            }))
            .unwrap(),
        )
    }

    #[test]
    fn local_load_balancers_report_their_endpoints_on_this_node() {
        let slices = &[slice(&["a", "a", "b"])];
        let on_a = wanted(
            &[service("LoadBalancer", "Local", Some(31000))],
            slices,
            "a",
        );
        assert_eq!(on_a[&31000].local_endpoints, 2);
        assert_eq!(page(on_a.get(&31000)).0, "200 OK");
        let body: serde_json::Value = serde_json::from_str(&page(on_a.get(&31000)).1).unwrap();
        assert_eq!(body["service"]["name"], "web");
        assert_eq!(body["localEndpoints"], 2);
        let on_c = wanted(
            &[service("LoadBalancer", "Local", Some(31000))],
            slices,
            "c",
        );
        assert_eq!(page(on_c.get(&31000)).0, "503 Service Unavailable");
        // Only LoadBalancer + Local has one.
        assert!(wanted(
            &[service("LoadBalancer", "Cluster", Some(31000))],
            slices,
            "a"
        )
        .is_empty());
        assert!(wanted(&[service("NodePort", "Local", None)], slices, "a").is_empty());
    }

    #[tokio::test]
    async fn servers_follow_the_wanted_ports() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ask = || async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
            let mut out = String::new();
            c.read_to_string(&mut out).await?;
            std::io::Result::Ok(out)
        };
        let mut checks = HealthChecks::default();
        let check = |n| Check {
            namespace: "ns".into(),
            name: "web".into(),
            local_endpoints: n,
        };
        checks.update(HashMap::from([(port, check(1))]));
        let mut answer = Err(std::io::ErrorKind::ConnectionRefused.into());
        for _ in 0..50 {
            answer = ask().await;
            if answer.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let answer = answer.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("application/json"), "{answer}");
        checks.update(HashMap::from([(port, check(0))]));
        assert!(ask().await.unwrap().starts_with("HTTP/1.1 503"));
        checks.update(HashMap::new());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(ask().await.is_err(), "closed once no longer wanted");
    }
}
