//! metrics.k8s.io/v1beta1 built into the API server, as k3s ships
//! metrics-server with every cluster: `kubectl top nodes` and `kubectl top
//! pods` work without installing anything.
//!
//! `scrape` fetches the agents' `/metrics/resource` (kubelet's resource
//! metrics, read by `prometheus`) into the `store`, which keeps the two
//! latest scrapes of each node and turns them into usage as metrics-server
//! does; `objects` and `format` write NodeMetrics and PodMetrics as
//! metrics-server writes them; `serve` answers get and list.

pub mod format;
pub mod objects;
pub mod prometheus;
pub mod scrape;
pub mod serve;
pub mod store;

use crate::http::resources::Call;
use crate::kubelet::KubeletClient;
use crate::registry::Registry;
use axum::response::Response;
use std::sync::Arc;

/// The API group served here.
pub const GROUP: &str = "metrics.k8s.io";

/// The metrics API: its scraper and the registry it reads nodes and pods from.
pub struct MetricsApi {
    scraper: Arc<scrape::Scraper>,
    registry: Arc<Registry>,
}

impl MetricsApi {
    /// Starts the (idle until asked) scraper; it talks to agents with `kubelet`.
    pub fn start(kubelet: KubeletClient, registry: Arc<Registry>) -> MetricsApi {
        MetricsApi {
            scraper: scrape::Scraper::start(kubelet, registry.clone()),
            registry,
        }
    }

    /// Whether `path` is this API's (`/apis/metrics.k8s.io/…` below a version).
    pub fn serves(path: &str) -> bool {
        let mut segs = path.trim_matches('/').split('/');
        segs.next() == Some("apis") && segs.next() == Some(GROUP) && segs.nth(1).is_some()
    }

    pub async fn handle(&self, call: &Call<'_>) -> Response {
        serve::handle(&self.scraper, &self.registry, call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_paths_are_served_here() {
        assert!(MetricsApi::serves("/apis/metrics.k8s.io/v1beta1/nodes"));
        assert!(MetricsApi::serves(
            "/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/b"
        ));
        // Discovery of the group stays with discovery.
        assert!(!MetricsApi::serves("/apis/metrics.k8s.io/v1beta1"));
        assert!(!MetricsApi::serves("/apis/metrics.k8s.io"));
        assert!(!MetricsApi::serves("/api/v1/nodes"));
    }
}
