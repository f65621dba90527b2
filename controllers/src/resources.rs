//! The API's resources as kube-rs dynamic types, from the shared catalog.

use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::{Api, Client};
use skiff_machinery::catalog::{self, Resource};

pub fn api_resource(res: &Resource) -> ApiResource {
    ApiResource {
        group: res.group.into(),
        version: res.version.into(),
        api_version: res.api_version(),
        kind: res.kind.into(),
        plural: res.plural.into(),
    }
}

/// Every stored resource, once, in its storage version.
pub fn stored() -> impl Iterator<Item = &'static Resource> {
    catalog::stored()
}

/// An API for one object's resource, in its namespace when namespaced.
pub fn api_for(client: &Client, res: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = api_resource(res);
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// A metadata-only API over every namespace (`as=PartialObjectMetadata` requests).
pub fn metadata_api(client: &Client, res: &Resource) -> Api<PartialObjectMeta<DynamicObject>> {
    Api::all_with(client.clone(), &api_resource(res))
}

// The process-wide shared informers (shared with the scheduler when both run
// in one process).
pub use skiff_machinery::client::informers::{
    cached, owned_by, owned_or_orphaned, reflected, Cacheable,
};
