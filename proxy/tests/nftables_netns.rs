//! The proxy's nftables mode in a real kernel, inside network namespaces
//! this test makes and removes (see `common`). Traffic goes only to
//! addresses inside these namespaces. Needs root and nft; without them it
//! says so and passes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use skiff_proxy::model::ServicePort;
use skiff_proxy::nft_apply::NftKernel;
use skiff_proxy::nftables::{self, TABLE};

/// Our table as the kernel lists it, in an order of its own: each chain's
/// rules, each map's and set's sorted elements.
fn ours() -> BTreeMap<String, Vec<String>> {
    let listing = sh("nft", &["list", "table", "ip", TABLE]);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    let mut elements: Option<String> = None;
    for line in listing.lines() {
        let t = line.trim();
        let depth = line.len() - line.trim_start_matches('\t').len();
        if let Some(buf) = &mut elements {
            buf.push_str(t);
        } else if let Some(rest) = t.strip_prefix("elements = {") {
            elements = Some(rest.to_string());
        } else if depth == 1 && t.ends_with('{') {
            current = t.trim_end_matches('{').trim().to_string();
            out.entry(current.clone()).or_default();
            continue;
        } else {
            if depth >= 2 {
                out.entry(current.clone()).or_default().push(t.to_string());
            }
            continue;
        }
        if elements.as_ref().is_some_and(|e| e.ends_with('}')) {
            let all = elements.take().unwrap_or_default();
            let mut es: Vec<String> = all
                .trim_end_matches('}')
                .split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect();
            es.sort();
            out.entry(current.clone()).or_default().extend(es);
        }
    }
    out
}

fn udp_and_more(pods: &[usize]) -> Vec<ServicePort> {
    // Several Services, so balancing chains share the endpoint maps.
    (0..20)
        .map(|i| ServicePort {
            name: format!("default/many-{i}"),
            cluster_ip: format!("10.43.1.{}", i + 1).parse().unwrap(),
            node_port: None,
            ..web(pods)
        })
        .collect()
}

#[test]
fn services_route_refuse_stick_and_resync_without_drift() {
    if let Some(why) = skip_reason(&["ip", "nft"]) {
        eprintln!("skipping: {why}");
        return;
    }
    // Everything below runs on a thread inside the node namespace.
    on_node(|rt, ctx| {
        let mut kernel = NftKernel::default();
        let mut sync = |ports: Vec<ServicePort>, full: bool| {
            let rs = nftables::render(&ports, &ctx);
            rt.block_on(kernel.sync(rs, full)).unwrap()
        };

        // Two endpoints, then three, by partial syncs.
        let mut ports = vec![web(&[0, 1]), empty()];
        ports.extend(udp_and_more(&[0, 1]));
        let first = sync(ports, true);
        assert!(first.chains_written >= 12, "{first:?}");
        let mut ports = vec![web(&[0, 1, 2]), empty(), sticky()];
        ports.extend(udp_and_more(&[0, 1]));
        let second = sync(ports, false);
        // web's balancing chain (its endpoints are map elements, so its
        // rule only changes with their number) and sticky's: nothing else.
        assert_eq!(second.chains_written, 2, "{second:?}");
        let script = second.to_string();
        assert!(!script.contains("flush table"), "{script}");
        check_spread_node_port_refusal_affinity();
        // The Services sharing the endpoint maps balance too.
        let many: BTreeSet<String> = (0..60).map(|_| ask("10.43.1.7:80").unwrap()).collect();
        assert_eq!(many.len(), 2, "{many:?}");

        // An endpoint gone: no request reaches it, none fails.
        let mut ports = vec![web(&[1, 2]), empty(), sticky()];
        ports.extend(udp_and_more(&[1, 2]));
        sync(ports, false);
        for _ in 0..50 {
            assert_ne!(ask("10.43.0.5:80").unwrap(), "pod0");
            assert_ne!(ask("10.43.1.3:80").unwrap(), "pod0");
        }
        // A service gone: its chains and sets go too.
        let mut ports = vec![web(&[1, 2]), empty()];
        ports.extend(udp_and_more(&[1, 2]));
        sync(ports.clone(), false);
        let after_changes = ours();
        assert!(after_changes.contains_key("chain nat-prerouting"));
        assert!(
            !after_changes.keys().any(|k| k.starts_with("set aff-")),
            "{after_changes:?}"
        );

        // The same state written whole by a fresh proxy: identical rules.
        rt.block_on(NftKernel::remove_all()).unwrap();
        assert!(!sh("nft", &["list", "tables"]).contains(TABLE));
        let mut fresh = NftKernel::default();
        let rs = nftables::render(&ports, &ctx);
        rt.block_on(fresh.sync(rs.clone(), true)).unwrap();
        assert_eq!(after_changes, ours());

        // Drift (a chain flushed by hand) is repaired by the next full sync,
        // and a table removed is noticed.
        sh("nft", &["flush", "chain", "ip", TABLE, "services"]);
        assert!(ask("10.43.0.5:80").is_err());
        rt.block_on(fresh.sync(rs.clone(), true)).unwrap();
        assert_eq!(after_changes, ours());
        assert!(ask("10.43.0.5:80").is_ok());
        assert!(rt.block_on(NftKernel::intact()).unwrap());
        sh("nft", &["delete", "table", "ip", TABLE]);
        assert!(!rt.block_on(NftKernel::intact()).unwrap());
        // A fresh proxy finds what a previous one left and removes what it
        // no longer has.
        rt.block_on(NftKernel::default().sync(rs, true)).unwrap();
        let mut fewer = NftKernel::default();
        rt.block_on(fewer.sync(nftables::render(&[web(&[1])], &ctx), true))
            .unwrap();
        let left = ours();
        let balancing = left.keys().filter(|k| k.starts_with("chain svc-"));
        assert_eq!(balancing.count(), 1, "{left:?}");
        assert_eq!(ask("10.43.0.5:80").unwrap(), "pod1");
        rt.block_on(NftKernel::remove_all()).unwrap();
    });
}
