//! The API's resources as kube-rs dynamic types, from the shared catalog.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::{Api, Client};
use skiff_machinery::catalog::{self, Resource};
use std::sync::Mutex;

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

/// The custom resources the API serves (its established CRDs), each in its
/// storage version: what upstream's controllers find through discovery.
pub async fn custom(client: &Client) -> Result<Vec<&'static Resource>, kube::Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let list = crds.list(&Default::default()).await?;
    Ok(list.items.iter().filter_map(custom_resource).collect())
}

/// An established CRD's storage version as a catalog resource. Leaked once
/// per distinct definition, as the controllers keep `&'static Resource`s.
pub fn custom_resource(crd: &CustomResourceDefinition) -> Option<&'static Resource> {
    static KNOWN: Mutex<Vec<&'static Resource>> = Mutex::new(Vec::new());
    let status = crd.status.as_ref()?;
    let established = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Established" && c.status == "True");
    let names = status.accepted_names.as_ref().filter(|_| established)?;
    let version = crd.spec.versions.iter().find(|v| v.storage)?;
    let namespaced = crd.spec.scope == "Namespaced";
    let same = |r: &&&'static Resource| {
        (r.group, r.version, r.kind, r.plural, r.namespaced)
            == (
                &*crd.spec.group,
                &*version.name,
                &*names.kind,
                &*names.plural,
                namespaced,
            )
    };
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = known.iter().find(same) {
        return Some(found);
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let plural = leak(&names.plural);
    let res: &'static Resource = Box::leak(Box::new(Resource {
        group: leak(&crd.spec.group),
        version: leak(&version.name),
        kind: leak(&names.kind),
        plural,
        singular: leak(names.singular.as_deref().unwrap_or_default()),
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        verbs: catalog::STANDARD_VERBS,
        storage_plural: plural,
        stored: true,
        custom: None,
    }));
    known.push(res);
    Some(res)
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
