//! The API's resources as kube-rs dynamic types, from the shared catalog.

use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::discovery::{verbs, Discovery, Scope};
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

/// The custom resources the API serves, each in its group's preferred
/// version, found as upstream's controllers find them: through discovery
/// (one aggregated request), in the groups that are not built in.
pub async fn custom(client: &Client) -> Result<Vec<&'static Resource>, kube::Error> {
    let builtin: Vec<&str> = catalog::groups().into_iter().map(|(g, _)| g).collect();
    let discovery = Discovery::new(client.clone())
        .exclude(&builtin)
        .run_aggregated()
        .await?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| caps.supports_operation(verbs::LIST))
        .map(|(ar, caps)| intern(&ar, caps.scope == Scope::Namespaced))
        .collect())
}

/// A custom resource as a catalog resource (interned: the controllers
/// keep `&'static Resource`s).
fn intern(ar: &ApiResource, namespaced: bool) -> &'static Resource {
    let plural = catalog::intern_str(&ar.plural);
    catalog::intern(Resource {
        group: catalog::intern_str(&ar.group),
        version: catalog::intern_str(&ar.version),
        kind: catalog::intern_str(&ar.kind),
        plural,
        singular: "",
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        verbs: catalog::STANDARD_VERBS,
        storage_plural: plural,
        stored: true,
        custom: None,
    })
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
