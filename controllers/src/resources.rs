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

/// The namespaced custom resources served, each in its storage version,
/// as `group/plural` names them: read from the established CRDs (upstream's
/// controllers find them through discovery).
pub async fn custom_namespaced(client: &Client) -> Result<Vec<ApiResource>, kube::Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let list = crds.list(&Default::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|crd| crd.spec.scope == "Namespaced")
        .filter(|crd| {
            let conditions = crd.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
        .filter_map(|crd| {
            let names = crd.status.as_ref()?.accepted_names.as_ref()?;
            let version = crd.spec.versions.iter().find(|v| v.storage)?;
            Some(ApiResource {
                group: crd.spec.group.clone(),
                version: version.name.clone(),
                api_version: format!("{}/{}", crd.spec.group, version.name),
                kind: names.kind.clone(),
                plural: names.plural.clone(),
            })
        })
        .collect())
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
