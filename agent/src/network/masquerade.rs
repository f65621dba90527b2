//! The node's iptables rules for the pod network: masquerade pod traffic
//! that leaves the cluster network (the bridge's ipMasq is off, so pods
//! reach pods on other nodes with their own addresses), and accept
//! forwarding of pod traffic (a node whose FORWARD policy is DROP, as
//! Docker leaves it, would otherwise drop it). Each lives in a skiff chain
//! written whole with `iptables-restore --noflush` (declaring a chain
//! flushes it, so a rerun replaces rather than appends), jumped to once
//! from the built-in chain.

use super::cidr::Cidr;
use super::cmd::{self, CommandError};

pub const NAT_CHAIN: &str = "SKIFF-POSTROUTING";
pub const FORWARD_CHAIN: &str = "SKIFF-FORWARD";
/// Marks the jumps from the built-in chains, so they are found and removed.
const JUMP_COMMENT: &str = "skiff pod network";

/// (table, built-in chain, skiff chain).
const JUMPS: [(&str, &str, &str); 2] = [
    ("nat", "POSTROUTING", NAT_CHAIN),
    ("filter", "FORWARD", FORWARD_CHAIN),
];

struct Tools {
    iptables: &'static str,
    restore: &'static str,
    save: &'static str,
}

fn tools(ipv4: bool) -> Tools {
    if ipv4 {
        Tools {
            iptables: "iptables",
            restore: "iptables-restore",
            save: "iptables-save",
        }
    } else {
        Tools {
            iptables: "ip6tables",
            restore: "ip6tables-restore",
            save: "ip6tables-save",
        }
    }
}

/// The `iptables-restore` input for a node with `pod` in `cluster`.
pub fn restore_input(pod: &Cidr, cluster: &Cidr) -> String {
    format!(
        "*nat\n\
         :{NAT_CHAIN} - [0:0]\n\
         -A {NAT_CHAIN} -s {pod} ! -d {cluster} -m comment --comment \"skiff: pod traffic leaving the cluster network\" -j MASQUERADE\n\
         COMMIT\n\
         *filter\n\
         :{FORWARD_CHAIN} - [0:0]\n\
         -A {FORWARD_CHAIN} -s {cluster} -m comment --comment \"skiff: pod traffic\" -j ACCEPT\n\
         -A {FORWARD_CHAIN} -d {cluster} -m comment --comment \"skiff: pod traffic\" -j ACCEPT\n\
         COMMIT\n"
    )
}

fn jump_args<'a>(op: &'a str, table: &'a str, chain: &'a str, target: &'a str) -> [&'a str; 11] {
    [
        "-w",
        "-t",
        table,
        op,
        chain,
        "-m",
        "comment",
        "--comment",
        JUMP_COMMENT,
        "-j",
        target,
    ]
}

/// Writes the chains (replacing what they held) and makes sure each is
/// jumped to exactly once.
pub async fn apply(pod: &Cidr, cluster: &Cidr) -> Result<(), CommandError> {
    let t = tools(pod.is_ipv4());
    let input = restore_input(pod, cluster);
    cmd::run(t.restore, &["--noflush"], Some(input.as_bytes())).await?;
    for (table, chain, target) in JUMPS {
        if cmd::run(t.iptables, &jump_args("-C", table, chain, target), None)
            .await
            .is_err()
        {
            cmd::run(t.iptables, &jump_args("-A", table, chain, target), None).await?;
        }
    }
    Ok(())
}

/// Removes the jumps and the chains, for both families. Missing ones (or
/// a missing ip6tables) are fine; chains still present afterwards are not.
pub async fn remove() -> Result<(), CommandError> {
    for ipv4 in [true, false] {
        let t = tools(ipv4);
        for (table, chain, target) in JUMPS {
            // -D removes one match per call; a crash mid-sync may have left two.
            for _ in 0..8 {
                let del = jump_args("-D", table, chain, target);
                if cmd::run(t.iptables, &del, None).await.is_err() {
                    break;
                }
            }
            for op in ["-F", "-X"] {
                let _ = cmd::run(t.iptables, &["-w", "-t", table, op, target], None).await;
            }
            let saved = match cmd::run(t.save, &["-t", table], None).await {
                Ok(s) => s,
                Err(CommandError::Spawn { .. }) => continue,
                // No such table in this kernel: no chain of ours either.
                Err(_) => continue,
            };
            if saved.contains(&format!(":{target} ")) {
                return Err(CommandError::Failed {
                    program: t.iptables.into(),
                    args: format!("-t {table} -X {target}"),
                    status: "chain still present".into(),
                    stderr: String::new(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_masquerade_only_traffic_leaving_the_cluster() {
        let pod: Cidr = "10.244.7.0/24".parse().unwrap();
        let cluster: Cidr = "10.244.0.0/16".parse().unwrap();
        let input = restore_input(&pod, &cluster);
        assert!(input.starts_with("*nat\n:SKIFF-POSTROUTING - [0:0]\n"));
        assert!(
            input.contains("-A SKIFF-POSTROUTING -s 10.244.7.0/24 ! -d 10.244.0.0/16 -m comment")
        );
        assert!(input.contains("-A SKIFF-FORWARD -d 10.244.0.0/16 "));
        assert_eq!(input.matches("COMMIT\n").count(), 2);
        assert!(
            !input.lines().any(|l| l.starts_with("-F")),
            "declaring the chain flushes it"
        );
    }
}
