//! Leader election on a `coordination.k8s.io` Lease, as client-go's
//! leaderelection: the holder renews the lease every two seconds; another
//! candidate takes it over only once it has gone unrenewed for its whole
//! duration, and a holder that cannot renew within the renew deadline
//! stops leading. So two schedulers never both bind.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::future::Future;
use std::time::Duration;

pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

pub struct Election {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
}

impl Election {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Election {
        Election {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
        }
    }

    /// One attempt to take or renew the lease; true while we hold it.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !ours {
            let duration = spec
                .lease_duration_seconds
                .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(0) as u64));
            let expired = spec.renew_time.as_ref().is_none_or(|t| {
                jiff::Timestamp::now().duration_since(t.0).unsigned_abs() > duration
            }) || spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if !expired {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        }
        spec.renew_time = Some(now);
        // A replace carries the resourceVersion read: a rival's write in
        // between makes it fail with 409, and we do not lead.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `lead` while holding the lease: waits to acquire it, keeps it
    /// renewed, and drops `lead` (cancelling it) once leadership is lost,
    /// then campaigns again. Returns only if `lead` itself returns.
    pub async fn run<F, Fut>(&self, mut lead: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        loop {
            loop {
                match self.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, lease = %self.name, "leader election"),
                }
                tokio::time::sleep(RETRY_PERIOD).await;
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
            let renew = async {
                let mut last_renewed = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(RETRY_PERIOD).await;
                    match self.try_acquire_or_renew().await {
                        Ok(true) => last_renewed = tokio::time::Instant::now(),
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing the lease");
                            if last_renewed.elapsed() > RENEW_DEADLINE {
                                return;
                            }
                        }
                    }
                }
            };
            tokio::select! {
                r = lead() => return r,
                _ = renew => tracing::warn!(lease = %self.name, "lost leadership"),
            }
        }
    }
}
