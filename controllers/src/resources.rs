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

/// A cache of every object of a kind, kept current by a watch in the
/// background; returned once the first list is in.
pub async fn cached<K>(client: &Client) -> anyhow::Result<kube::runtime::reflector::Store<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let (store, writer) = reflector::store::<K>();
    let feed = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| async {});
    tokio::spawn(feed);
    store.wait_until_ready().await?;
    Ok(store)
}

/// A cache of every object of a kind and the watch stream that fills it, for
/// a controller to be triggered by (`Controller::watches_stream`): each object
/// the stream yields is already in the store, so a reconcile it triggers never
/// reads a state older than its trigger. The store fills as the controller
/// polls the stream; wait on `Store::wait_until_ready` before trusting it.
pub fn reflected<K>(
    client: &Client,
) -> (
    kube::runtime::reflector::Store<K>,
    impl futures::Stream<Item = Result<K, kube::runtime::watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (store, stream)
}
