//! The service proxy's figures: how long a full rule sync takes with 1,000
//! and 10,000 Services of 10 endpoints each, and an incremental sync after
//! one Service's endpoints change at 10,000 — from the informer caches to
//! rules in the kernel, in a network namespace made for the run (removed
//! after), in both proxy modes (iptables, nftables). kube-proxy's iptables
//! mode, the reference, needs seconds for a full sync at 10,000 Services.
//! Then the cluster DNS: queries per second for cluster names from one
//! client. Needs root, iptables and nft.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::watcher;
use serde_json::json;
use skiff_proxy::restore::{self, Kernel};
use skiff_proxy::rules::Context;
use skiff_proxy::sync::{Iptables, Mode, Nftables, Renderer};

const ENDPOINTS: usize = 10;
const NODE: &str = "bench-node";

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}"), "resourceVersion": "1"},
        "spec": {"clusterIP": format!("10.43.{}.{}", i / 250, 1 + i % 250),
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .expect("a valid Service")
}

/// Service `i`'s slice; `generation` shifts its addresses, as a rollout does.
fn slice(i: usize, generation: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..ENDPOINTS)
        .map(|e| {
            let n = (i * ENDPOINTS + e + generation) % (250 * 250);
            json!({"addresses": [format!("10.42.{}.{}", n / 250, 1 + n % 250)],
                   // A node runs at most 110 pods: about 100 endpoints here.
                   "nodeName": if e == 0 && i.is_multiple_of(100) { NODE } else { "other" },
                   "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-abcde"),
                     "resourceVersion": (generation + 1).to_string(),
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .expect("a valid EndpointSlice")
}

struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    slice_writer: Writer<EndpointSlice>,
}

fn caches(n: usize) -> Caches {
    let (services, mut svc_writer) = reflector::store();
    let (slices, mut slice_writer) = reflector::store();
    for i in 0..n {
        svc_writer.apply_watcher_event(&watcher::Event::Apply(service(i)));
        slice_writer.apply_watcher_event(&watcher::Event::Apply(slice(i, 0)));
    }
    Caches {
        services,
        slices,
        slice_writer,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One sync as the proxy's loop does it: caches → rules → kernel.
async fn sync<M: Mode>(
    kernel: &mut M::Kernel,
    renderer: &mut Renderer<M>,
    c: &Caches,
    full: bool,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let rs = renderer.ruleset(&c.services.state(), &c.slices.state());
    M::write(kernel, rs, full).await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn context() -> anyhow::Result<Context> {
    Ok(Context {
        cluster_cidr: Some("10.42.0.0/16".parse()?),
    })
}

struct Figures {
    full_1k: f64,
    full_10k: f64,
    incremental_10k: f64,
    rules_10k: usize,
}

/// One Service's endpoints move (a rollout of one Deployment): the `g`th
/// such change.
fn roll(c: &mut Caches, g: usize) {
    let i = g * 997 % 10_000;
    c.slice_writer
        .apply_watcher_event(&watcher::Event::Apply(slice(i, g)));
}

/// The figures of one proxy mode (`label` names it in the output).
async fn measure<M: Mode>(label: &str) -> anyhow::Result<Figures> {
    let ctx = context()?;
    let full = |n: usize| {
        let ctx = ctx.clone();
        async move {
            let c = caches(n);
            let mut runs = Vec::new();
            for _ in 0..3 {
                M::remove_all().await?;
                let mut kernel = M::Kernel::default();
                let mut renderer = Renderer::<M>::new(NODE, ctx.clone());
                runs.push(sync(&mut kernel, &mut renderer, &c, true).await?);
            }
            println!("{label}: full sync, {n} services x {ENDPOINTS} endpoints: {runs:.1?} ms");
            anyhow::Ok((median(runs), c))
        }
    };
    let (full_1k, _) = full(1000).await?;
    let (full_10k, mut c) = full(10_000).await?;
    let mut kernel = M::Kernel::default();
    let mut renderer = Renderer::<M>::new(NODE, ctx.clone());
    M::remove_all().await?;
    sync(&mut kernel, &mut renderer, &c, true).await?;
    let mut runs = Vec::new();
    for g in 1..=7 {
        roll(&mut c, g);
        runs.push(sync(&mut kernel, &mut renderer, &c, false).await?);
    }
    println!("{label}: incremental sync, one of 10000 services changed: {runs:.1?} ms");
    // Where an incremental sync's time goes: the rules from the caches
    // (one Service re-rendered), and the kernel.
    let (mut compute, mut write) = (Vec::new(), Vec::new());
    let mut written = 0;
    for g in 8..=12 {
        roll(&mut c, g);
        let t = Instant::now();
        let rs = renderer.ruleset(&c.services.state(), &c.slices.state());
        compute.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        written = M::write(&mut kernel, rs, false).await?;
        write.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{label}:   of which caches to rules {:.1} ms, writing {:.1} ms ({written} chains)",
        median(compute),
        median(write),
    );
    let rs = renderer.ruleset(&c.services.state(), &c.slices.state());
    let (nat, filter) = M::rule_counts(&rs);
    M::remove_all().await?;
    Ok(Figures {
        full_1k,
        full_10k,
        incremental_10k: median(runs),
        rules_10k: nat + filter,
    })
}

/// Why iptables' incremental syncs cost what they cost: every commit of a
/// rule with a jump or NAT makes nf_tables validate all chains reachable
/// from each base chain (PREROUTING and OUTPUT both reach all 10,000
/// Services). The same writes with our chains unreachable show it.
async fn iptables_unreachable() -> anyhow::Result<f64> {
    let mut c = caches(10_000);
    let mut kernel = Kernel::default();
    let mut renderer = Renderer::<Iptables>::new(NODE, context()?);
    Kernel::remove_all().await?;
    sync(&mut kernel, &mut renderer, &c, true).await?;
    restore::remove_jumps().await;
    let mut unreachable = Vec::new();
    for g in 13..=17 {
        roll(&mut c, g);
        let rs = renderer.ruleset(&c.services.state(), &c.slices.state());
        let t = Instant::now();
        kernel.sync(&rs, false).await?;
        unreachable.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Kernel::remove_all().await?;
    Ok(median(unreachable))
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new(args[0]).args(&args[1..]).status()?;
    anyhow::ensure!(st.success(), "{args:?} failed");
    Ok(())
}

pub async fn run() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "the proxy bench needs root"
    );
    let ns = format!("skiff-bench-proxy-{}", std::process::id());
    sh(&["ip", "netns", "add", &ns])?;
    let path = format!("/run/netns/{ns}");
    // The rules go into the namespace: a thread that joined it, with a
    // runtime of its own, so every iptables it runs acts there.
    let figures = std::thread::spawn(move || -> anyhow::Result<(Figures, Figures)> {
        let f = std::fs::File::open(&path)?;
        // SAFETY: a valid fd; setns changes only this thread's namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            anyhow::bail!("setns: {}", std::io::Error::last_os_error());
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let iptables = measure::<Iptables>("iptables").await?;
                let unreachable = iptables_unreachable().await?;
                println!(
                    "iptables:   the same restore with no jump into our chains: {unreachable:.1} ms"
                );
                let nftables = measure::<Nftables>("nftables").await?;
                anyhow::Ok((iptables, nftables))
            })
    })
    .join();
    let _ = sh(&["ip", "netns", "del", &ns]);
    let (f, nft) = figures.map_err(|_| anyhow::anyhow!("the bench thread panicked"))??;
    println!(
        "rules at 10000 services: iptables {}, nftables {} (endpoints are map elements)",
        f.rules_10k, nft.rules_10k
    );
    let dns_qps = dns_qps(1000, Duration::from_secs(3)).await?;
    println!("cluster DNS, 1000 services, one client (32 in flight): {dns_qps:.0} queries/s");
    println!(
        "RESULT full_sync_1k_ms={:.0} full_sync_10k_ms={:.0} incremental_10k_ms={:.1} dns_qps={:.0} \
         nft_full_sync_1k_ms={:.0} nft_full_sync_10k_ms={:.0} nft_incremental_10k_ms={:.1}",
        f.full_1k,
        f.full_10k,
        f.incremental_10k,
        dns_qps,
        nft.full_1k,
        nft.full_10k,
        nft.incremental_10k
    );
    Ok(())
}

/// Queries per second the cluster DNS answers for `services` Service
/// names, from one UDP client on loopback keeping 32 queries in flight,
/// for `time` (and at most a million queries).
async fn dns_qps(services: usize, time: Duration) -> anyhow::Result<f64> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use tokio::net::UdpSocket;

    let c = caches(services);
    let (tx, changes) = tokio::sync::watch::channel(0u64);
    let cached = skiff_proxy::Caches {
        services: c.services.clone(),
        slices: c.slices.clone(),
        changes,
    };
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let server = udp.local_addr()?;
    let opts = skiff_proxy::dns::DnsOptions {
        listen: vec![server],
        cluster_domain: "cluster.local".into(),
        // Never asked (only cluster names are); not read from the host.
        upstreams: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
        ttl: 5,
    };
    let metrics = std::sync::Arc::new(skiff_proxy::dns::DnsMetrics::default());
    let task = tokio::spawn(skiff_proxy::dns::serve_on(
        opts,
        vec![udp],
        Vec::new(),
        cached,
        metrics,
    ));
    let queries: Vec<Vec<u8>> = (0..services)
        .map(|i| {
            let mut m = Message::new();
            let name =
                Name::from_ascii(format!("svc-{i}.bench.svc.cluster.local.")).expect("a name");
            m.set_id(i as u16)
                .add_query(Query::query(name, RecordType::A));
            m.to_vec().expect("a query")
        })
        .collect();
    let client = UdpSocket::bind("127.0.0.1:0").await?;
    client.connect(server).await?;
    // The zone is built once the server starts: wait for a real answer.
    let mut buf = vec![0u8; 4096];
    loop {
        client.send(&queries[0]).await?;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await
        {
            if Message::from_vec(&buf[..n]).is_ok_and(|m| !m.answers().is_empty()) {
                break;
            }
        }
    }
    let started = Instant::now();
    let (mut sent, mut answered) = (0usize, 0usize);
    for _ in 0..32 {
        client.send(&queries[sent % services]).await?;
        sent += 1;
    }
    while started.elapsed() < time && answered < 1_000_000 {
        // On a timeout a datagram was lost: put another in flight.
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(1), client.recv(&mut buf)).await {
            let n = r?;
            // Count answers, not datagrams: check one in a thousand.
            if answered.is_multiple_of(1000) {
                let m = Message::from_vec(&buf[..n])?;
                anyhow::ensure!(m.answers().len() == 1, "a cluster name unanswered: {m:?}");
            }
            answered += 1;
        }
        client.send(&queries[sent % services]).await?;
        sent += 1;
    }
    let qps = answered as f64 / started.elapsed().as_secs_f64();
    task.abort();
    drop(tx);
    Ok(qps)
}
