//! TTL after finished: a Job with `ttlSecondsAfterFinished` is deleted (with
//! its pods, foreground) that many seconds after it completed or failed.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::{Client, ResourceExt};
use std::time::Duration;

const PERIOD: Duration = Duration::from_secs(2);

pub async fn run(client: Client) -> anyhow::Result<()> {
    let queue = crate::metrics::queue("ttlafterfinished");
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        if let Err(e) = queue.pass(collect(&client)).await {
            tracing::warn!(error = %e, "TTL-after-finished pass failed");
        }
    }
}

/// When the job finished: its Complete or Failed condition turning True.
fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

async fn collect(client: &Client) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    for job in Api::<Job>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            continue;
        };
        let Some(done) = finished_at(&job) else {
            continue;
        };
        if job.metadata.deletion_timestamp.is_some()
            || now.duration_since(done).as_secs() < ttl as i64
        {
            continue;
        }
        let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
        let dp = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: job.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&job.name_any(), &dp).await {
            Ok(_) => {
                tracing::info!(job = %job.name_any(), namespace = ?job.namespace(), "finished job past its TTL deleted")
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
