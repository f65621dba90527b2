//! skiff's controllers. Each is an ordinary API client (kube-rs): it watches,
//! compares desired and observed state, and acts only through the API.

pub mod garbagecollector;
pub mod namespace;
pub mod resources;

use kube::Client;

/// Runs every controller until one fails irrecoverably.
pub async fn run(client: Client) -> anyhow::Result<()> {
    tokio::select! {
        r = namespace::run(client.clone()) => r,
        r = garbagecollector::run(client.clone()) => r,
    }
}
