//! The service account controller: every active namespace has a `default`
//! ServiceAccount, created again if deleted (upstream's
//! serviceaccounts_controller). Tokens come with the auth issue.

use crate::metrics::Controller;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT: &str = "default";

pub async fn run(client: Client) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    Controller::new("serviceaccount", nss, watcher::Config::default())
        // A deleted default account brings its namespace back for a look.
        .watches(
            sas,
            watcher::Config::default().fields("metadata.name=default"),
            |sa| {
                sa.metadata
                    .namespace
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Namespace>, err: &kube::Error, _: Arc<Client>) -> Action {
    tracing::warn!(error = %err, "service account reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, kube::Error> {
    let Some(name) = crate::namespace::active_name(&ns) else {
        return Ok(Action::await_change());
    };
    let sas: Api<ServiceAccount> = Api::namespaced((*client).clone(), name);
    if sas.get_opt(DEFAULT).await?.is_none() {
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some(DEFAULT.into());
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, "created the default service account"),
            // Raced with another creator, or the namespace began terminating: fine.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
