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

/// What a failed request says, as upstream's controllers put it in events:
/// the API server's own message (`pods "x" is forbidden: exceeded quota:
/// …`), not the client's wrapping of it.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}
