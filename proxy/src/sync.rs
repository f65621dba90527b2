//! The rule sync loop: on every Service or EndpointSlice change (coalesced,
//! at most one sync per minimum interval) the rules are rebuilt from the
//! informer caches and the changed chains written. Every sync period the
//! jumps into our chains are checked (a firewall reload removes them), and
//! every tenth the whole rule set is written again, repairing whatever else
//! drifted (a flushed chain). Not every period: with iptables-nft a full
//! write of 10,000 Services takes seconds.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::healthcheck::{self, HealthChecks};
use crate::metrics::{SyncMetrics, SyncReport};
use crate::model::{self, ServicePort};
use crate::rules::Context;
use crate::{nft_apply, nftables, restore, rules};

/// Every how many sync periods the whole rule set is written.
const FULL_EVERY: u32 = 10;

/// How Services become packet rules (kube-proxy's `--proxy-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// Chains in iptables' nat and filter tables, written with
    /// `iptables-restore` (kube-proxy's default, and k3s's).
    #[default]
    Iptables,
    /// One nftables table with Services as map elements (`nft`).
    Nftables,
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub node_name: String,
    pub mode: ProxyMode,
    pub context: Context,
    /// The least time between two syncs (kube-proxy's
    /// `--iptables-min-sync-period`, 1 s).
    pub min_interval: Duration,
    /// How often the jumps are checked (`--iptables-sync-period`); every
    /// tenth period everything is written again.
    pub period: Duration,
}

/// The IPv4 service ports of everything in the caches.
pub fn service_ports(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    node: &str,
) -> Vec<ServicePort> {
    let all_slices = slices.state();
    let by_service = slices_by_service(&all_slices);
    let mut out = Vec::new();
    for svc in services.state() {
        let slices = by_service
            .get(&key_of(&svc))
            .map(Vec::as_slice)
            .unwrap_or_default();
        out.extend(model::service_ports(&svc, slices, node, true));
    }
    out
}

fn key_of(svc: &Service) -> (&str, &str) {
    (
        svc.metadata.namespace.as_deref().unwrap_or_default(),
        svc.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The slices of each Service, by (namespace, name).
pub(crate) fn slices_by_service(
    all: &[Arc<EndpointSlice>],
) -> HashMap<(&str, &str), Vec<&EndpointSlice>> {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> =
        HashMap::with_capacity_and_hasher(all.len(), Default::default());
    for s in all {
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(model::SERVICE_NAME_LABEL))
        {
            by_service.entry((ns, svc.as_str())).or_default().push(s);
        }
    }
    by_service
}

/// What a proxy mode makes of the Services, and how it writes that into
/// the kernel.
pub trait Mode {
    /// One Service's rules, kept while it and its slices stay as they were.
    type Fragment;
    /// Everything the mode keeps in the kernel.
    type Ruleset;
    /// The kernel-side state carried between syncs.
    type Kernel: Default;
    fn fragment(ports: &[ServicePort], ctx: &Context) -> Self::Fragment;
    /// The whole rule set from every Service's fragment, in order.
    fn assemble(fragments: &[&Self::Fragment]) -> Self::Ruleset;
    /// Rules (nat, filter).
    fn rule_counts(rs: &Self::Ruleset) -> (usize, usize);
    /// Writes `rs` (everything when `full`); how many chains it wrote.
    fn write(
        kernel: &mut Self::Kernel,
        rs: Self::Ruleset,
        full: bool,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send;
    /// Checks what a firewall reload may have removed, between full syncs:
    /// false when everything must be written again.
    fn intact() -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// Removes every rule of this mode.
    fn remove_all() -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Removes the other mode's rules, at the start.
    fn remove_other_mode() -> impl Future<Output = ()> + Send;
}

/// `--proxy-mode iptables`.
pub struct Iptables;

impl Mode for Iptables {
    type Fragment = rules::Fragment;
    type Ruleset = rules::Ruleset;
    type Kernel = restore::Kernel;
    fn fragment(ports: &[ServicePort], ctx: &Context) -> rules::Fragment {
        rules::fragment(ports, ctx)
    }
    fn assemble(fragments: &[&rules::Fragment]) -> rules::Ruleset {
        rules::assemble(fragments)
    }
    fn rule_counts(rs: &rules::Ruleset) -> (usize, usize) {
        (rs.nat.rule_count(), rs.filter.rule_count())
    }
    async fn write(
        kernel: &mut restore::Kernel,
        rs: rules::Ruleset,
        full: bool,
    ) -> anyhow::Result<usize> {
        Ok(kernel.sync(&rs, full).await?.chains_written)
    }
    async fn intact() -> anyhow::Result<bool> {
        restore::ensure_jumps().await?;
        Ok(true)
    }
    async fn remove_all() -> anyhow::Result<()> {
        Ok(restore::Kernel::remove_all().await?)
    }
    async fn remove_other_mode() {
        if let Err(e) = Nftables::remove_all().await {
            tracing::debug!(error = %e, "no nftables rules of ours to remove");
        }
    }
}

/// `--proxy-mode nftables`.
pub struct Nftables;

impl Mode for Nftables {
    type Fragment = nftables::Fragment;
    type Ruleset = nftables::NftRuleset;
    type Kernel = nft_apply::NftKernel;
    fn fragment(ports: &[ServicePort], ctx: &Context) -> nftables::Fragment {
        nftables::fragment(ports, ctx)
    }
    fn assemble(fragments: &[&nftables::Fragment]) -> nftables::NftRuleset {
        nftables::assemble(fragments)
    }
    fn rule_counts(rs: &nftables::NftRuleset) -> (usize, usize) {
        rs.rule_counts()
    }
    async fn write(
        kernel: &mut nft_apply::NftKernel,
        rs: nftables::NftRuleset,
        full: bool,
    ) -> anyhow::Result<usize> {
        Ok(kernel.sync(rs, full).await?.chains_written)
    }
    async fn intact() -> anyhow::Result<bool> {
        Ok(nft_apply::NftKernel::intact().await?)
    }
    async fn remove_all() -> anyhow::Result<()> {
        Ok(nft_apply::NftKernel::remove_all().await?)
    }
    async fn remove_other_mode() {
        if let Err(e) = Iptables::remove_all().await {
            tracing::debug!(error = %e, "no iptables rules of ours to remove");
        }
    }
}

/// Builds the rule set from the caches, re-rendering only the Services
/// that (or whose slices) changed since the last time: each Service's
/// rules are kept with the resourceVersions they were made from. At 10,000
/// Services a sync looks at every one, so the look allocates nothing for a
/// Service that did not change.
pub struct Renderer<M: Mode = Iptables> {
    node: String,
    context: Context,
    /// By `<namespace>/<name>` (neither may hold a `/`).
    kept: HashMap<String, Kept<M::Fragment>>,
    /// Counts syncs; a kept entry not seen in the current one is gone.
    generation: u64,
}

struct Kept<F> {
    fingerprint: u64,
    fragment: Arc<F>,
    seen: u64,
}

/// The versions a Service's rules depend on; None when an object has no
/// resourceVersion (then nothing is kept). The slices' part is a sum, so
/// their order does not matter.
fn fingerprint(svc: &Service, slices: &[&EndpointSlice]) -> Option<u64> {
    let one = |name: &str, version: &str| {
        let mut h = DefaultHasher::new();
        (name, version).hash(&mut h);
        h.finish()
    };
    let mut sum = one("", svc.metadata.resource_version.as_deref()?);
    for s in slices {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        sum = sum.wrapping_add(one(name, s.metadata.resource_version.as_deref()?));
    }
    Some(sum)
}

impl<M: Mode> Renderer<M> {
    pub fn new(node: &str, context: Context) -> Renderer<M> {
        Renderer {
            node: node.to_string(),
            context,
            kept: HashMap::default(),
            generation: 0,
        }
    }

    /// The rule set for the caches' current state (`services`, `slices`).
    pub fn ruleset(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> M::Ruleset {
        self.generation += 1;
        let generation = self.generation;
        let by_service = slices_by_service(slices);
        let mut fragments: Vec<((&str, &str), Arc<M::Fragment>)> =
            Vec::with_capacity(services.len());
        let mut key = String::new();
        for svc in services {
            let (ns, name) = key_of(svc);
            let slices = by_service
                .get(&(ns, name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            key.clear();
            key.push_str(ns);
            key.push('/');
            key.push_str(name);
            let fp = fingerprint(svc, slices);
            let fragment = match (fp, self.kept.get_mut(key.as_str())) {
                (Some(fp), Some(kept)) if kept.fingerprint == fp => {
                    kept.seen = generation;
                    kept.fragment.clone()
                }
                _ => {
                    let ports = model::service_ports(svc, slices, &self.node, true);
                    let fragment = Arc::new(M::fragment(&ports, &self.context));
                    match fp {
                        Some(fingerprint) => {
                            let kept = Kept {
                                fingerprint,
                                fragment: fragment.clone(),
                                seen: generation,
                            };
                            self.kept.insert(key.clone(), kept);
                        }
                        None => {
                            self.kept.remove(key.as_str());
                        }
                    }
                    fragment
                }
            };
            fragments.push(((ns, name), fragment));
        }
        // Services gone: their rules go too.
        self.kept.retain(|_, k| k.seen == generation);
        fragments.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<&M::Fragment> = fragments.iter().map(|(_, f)| &**f).collect();
        M::assemble(&refs)
    }
}

/// Runs until `changes` closes. Each value sent on it means "the caches
/// changed"; the caches must have been synced once before the first.
pub async fn run(
    opts: SyncOptions,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    changes: watch::Receiver<u64>,
    metrics: Arc<SyncMetrics>,
) {
    match opts.mode {
        ProxyMode::Iptables => run_mode::<Iptables>(opts, services, slices, changes, metrics).await,
        ProxyMode::Nftables => run_mode::<Nftables>(opts, services, slices, changes, metrics).await,
    }
}

async fn run_mode<M: Mode>(
    opts: SyncOptions,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    mut changes: watch::Receiver<u64>,
    metrics: Arc<SyncMetrics>,
) {
    M::remove_other_mode().await;
    let mut kernel = M::Kernel::default();
    let mut renderer = Renderer::<M>::new(&opts.node_name, opts.context.clone());
    let mut last_period = Instant::now();
    let mut periods = 0u32;
    let (mut full, mut repair) = (true, false);
    let mut retry = Duration::from_millis(500);
    let mut health_checks = HealthChecks::default();
    loop {
        let started = Instant::now();
        // One look at the caches for the rules and the health checks.
        let (now_services, now_slices) = (services.state(), slices.state());
        let rs = renderer.ruleset(&now_services, &now_slices);
        health_checks.update(healthcheck::wanted(
            &now_services,
            &now_slices,
            &opts.node_name,
        ));
        if repair && !full {
            match M::intact().await {
                Ok(true) => {}
                Ok(false) => full = true,
                Err(e) => tracing::warn!(error = %e, "cannot check the proxy's rules"),
            }
        }
        let (nat_rules, filter_rules) = M::rule_counts(&rs);
        match M::write(&mut kernel, rs, full).await {
            Ok(chains_written) => {
                let took = started.elapsed();
                tracing::debug!(full, ?took, chains = chains_written, "rules synced");
                metrics.succeeded(SyncReport {
                    full,
                    took,
                    chains_written,
                    nat_rules,
                    filter_rules,
                });
                (full, repair) = (false, false);
                retry = Duration::from_millis(500);
            }
            Err(e) => {
                tracing::warn!(error = %e, "rule sync failed; retrying");
                metrics.failed(e.to_string());
                // The kernel's state is unknown: the next sync writes all.
                full = true;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(opts.period);
                continue;
            }
        }
        // Wait for a change or the next period, then keep the interval.
        let until_period = opts.period.saturating_sub(last_period.elapsed());
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(until_period) => {
                last_period = Instant::now();
                periods += 1;
                if periods.is_multiple_of(FULL_EVERY) {
                    full = true;
                } else {
                    repair = true;
                }
            }
        }
        let next = started + opts.min_interval;
        tokio::time::sleep_until(next.into()).await;
        changes.borrow_and_update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher::Event};
    use serde_json::json;

    fn service(name: &str, version: &str, port: i32) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": name, "resourceVersion": version},
            "spec": {"clusterIP": format!("10.43.0.{port}"), "ports": [{"name": "http", "port": port, "targetPort": 8080}]}
        }))
        .unwrap()
    }

    fn slice(service: &str, version: &str, ips: &[&str]) -> EndpointSlice {
        let endpoints: Vec<_> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": format!("{service}-x"), "resourceVersion": version,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    /// What the renderer keeps and what it re-renders add up to the rules
    /// made from scratch, through additions, changes and deletions.
    #[test]
    fn kept_rules_equal_a_fresh_render() {
        let (services, mut svc_writer) = reflector::store::<Service>();
        let (slices, mut slice_writer) = reflector::store::<EndpointSlice>();
        let ctx = Context::default();
        let mut renderer = Renderer::new("node", ctx.clone());
        let fresh = |renderer: &mut Renderer| {
            let kept = renderer.ruleset(&services.state(), &slices.state());
            let from_scratch = rules::render(&service_ports(&services, &slices, "node"), &ctx);
            assert_eq!(kept, from_scratch);
            kept
        };
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            svc_writer.apply_watcher_event(&Event::Apply(service(name, "1", 80 + i as i32)));
            slice_writer.apply_watcher_event(&Event::Apply(slice(name, "1", &["10.42.0.2"])));
        }
        let first = fresh(&mut renderer);
        // New endpoints for b: b's rules change.
        slice_writer.apply_watcher_event(&Event::Apply(slice(
            "b",
            "2",
            &["10.42.0.2", "10.42.0.3"],
        )));
        let second = fresh(&mut renderer);
        assert_ne!(first, second);
        // c changes its port, a goes away, and a comes back.
        svc_writer.apply_watcher_event(&Event::Apply(service("c", "2", 90)));
        fresh(&mut renderer);
        svc_writer.apply_watcher_event(&Event::Delete(service("a", "1", 80)));
        fresh(&mut renderer);
        svc_writer.apply_watcher_event(&Event::Apply(service("a", "3", 80)));
        fresh(&mut renderer);
    }
}
