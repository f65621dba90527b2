//! The proxy's rules in a real kernel, inside network namespaces this test
//! makes and removes: a "node" namespace (the test body runs on a thread
//! that has setns'd into it, so every iptables it spawns acts there, never
//! on the host) and three "pod" namespaces, each on a veth to the node with
//! a small TCP server answering its own name. Traffic goes only to
//! addresses inside these namespaces. Needs root and iptables; without them
//! it says so and passes.

mod common;

use std::collections::BTreeMap;

use common::*;
use skiff_proxy::model::ServicePort;
use skiff_proxy::restore::Kernel;
use skiff_proxy::rules;

/// Our chains and the jumps to them, as the kernel lists them.
fn ours() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for table in ["nat", "filter"] {
        for line in sh("iptables-save", &["-t", table]).lines() {
            if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap();
                if name.starts_with("SKIFF-") {
                    out.entry(format!("{table}/{name}")).or_default();
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap();
                if chain.starts_with("SKIFF-") || rule.contains("-j SKIFF-") {
                    out.entry(format!("{table}/{chain}"))
                        .or_default()
                        .push(line.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn services_route_refuse_stick_and_resync_without_drift() {
    if let Some(why) = skip_reason(&["ip", "iptables", "iptables-save", "iptables-restore"]) {
        eprintln!("skipping: {why}");
        return;
    }
    // Everything below runs on a thread inside the node namespace.
    on_node(|rt, ctx| {
        let mut kernel = Kernel::default();
        let mut sync = |ports: Vec<ServicePort>, full: bool| {
            let rs = rules::render(&ports, &ctx);
            rt.block_on(kernel.sync(&rs, full)).unwrap()
        };

        // Two endpoints, then three, by partial syncs.
        let first = sync(vec![web(&[0, 1]), empty()], true);
        assert!(first.chains_written >= 9, "{first:?}");
        let second = sync(vec![web(&[0, 1, 2]), empty(), sticky()], false);
        // The balancing chains of both services, their jumps, and the
        // hairpin rules: not the fixed chains nor the node port's.
        assert_eq!(second.chains_written, 4, "{second:?}");
        check_spread_node_port_refusal_affinity();

        // An endpoint gone: no request reaches it, none fails.
        sync(vec![web(&[1, 2]), empty(), sticky()], false);
        for _ in 0..50 {
            assert_ne!(ask("10.43.0.5:80").unwrap(), "pod0");
        }
        // A service gone: its chains go too.
        sync(vec![web(&[1, 2]), empty()], false);
        let after_changes = ours();
        assert!(!after_changes.is_empty());

        // The same state written whole by a fresh proxy: identical rules.
        rt.block_on(Kernel::remove_all()).unwrap();
        assert!(ours().is_empty(), "cleanup leaves nothing: {:?}", ours());
        let mut fresh = Kernel::default();
        let rs = rules::render(&[web(&[1, 2]), empty()], &ctx);
        rt.block_on(fresh.sync(&rs, true)).unwrap();
        assert_eq!(after_changes, ours());

        // Drift (a chain flushed by hand) is repaired by the next full sync.
        sh("iptables", &["-t", "nat", "-F", rules::SERVICES]);
        assert!(ask("10.43.0.5:80").is_err());
        rt.block_on(fresh.sync(&rs, true)).unwrap();
        assert_eq!(after_changes, ours());
        assert!(ask("10.43.0.5:80").is_ok());
        rt.block_on(Kernel::remove_all()).unwrap();
    });
}
