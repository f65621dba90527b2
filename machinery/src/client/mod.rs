//! What skiff's API clients (scheduler, controllers) share: an event
//! recorder and leader election. Behind the `client` feature, so the API
//! server does not build a kube client.

pub mod events;
pub mod leader;
