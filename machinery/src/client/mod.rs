//! What skiff's API clients (scheduler, controllers) share: an event
//! recorder, leader election and the shared informers. Behind the `client`
//! feature, so the API server does not build a kube client.

pub mod cachedpod;
pub mod compact;
pub mod eventcorrelator;
pub mod events;
pub mod http2;
pub mod informers;
pub mod leader;
pub mod nodeaffinity;

pub use cachedpod::CachedPod;
