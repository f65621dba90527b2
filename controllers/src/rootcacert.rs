//! The root CA publisher (upstream's rootcacertpublisher): every active
//! namespace has a ConfigMap `kube-root-ca.crt` holding the cluster CA, which
//! the `kube-api-access-*` volume projects into pods as `ca.crt` so in-cluster
//! clients can check the API server's certificate. A deleted or altered copy
//! is put back.

use crate::metrics::Controller;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "kube-root-ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
when using internal endpoints such as the internal service IP or kubernetes.default.svc. \
No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Ctx {
    client: Client,
    /// The cluster CA, PEM.
    root_ca: String,
}

pub async fn run(client: Client, root_ca: String) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    Controller::new("root-ca-cert-publisher", nss, watcher::Config::default())
        // A changed or deleted copy brings its namespace back for a look.
        .watches(
            cms,
            watcher::Config::default().fields(&format!("metadata.name={NAME}")),
            |cm| {
                cm.metadata
                    .namespace
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .run(reconcile, error_policy, Arc::new(Ctx { client, root_ca }))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Namespace>, err: &kube::Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "root CA publish failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let Some(name) = crate::namespace::active_name(&ns) else {
        return Ok(Action::await_change());
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), name);
    let data = BTreeMap::from([("ca.crt".to_string(), ctx.root_ca.clone())]);
    match api.get_opt(NAME).await? {
        None => {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(NAME.into());
            cm.metadata.annotations = Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )]));
            cm.data = Some(data);
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => {}
                // Raced with another publisher, or the namespace went away
                // or began terminating: nothing to retry.
                Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 403) => {}
                Err(e) => return Err(e),
            }
        }
        Some(mut cm) => {
            let described = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() != Some(&data) || !described {
                cm.data = Some(data);
                cm.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
                // A conflict means a newer copy is on its way here.
                match api.replace(NAME, &PostParams::default(), &cm).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(Action::await_change())
}
