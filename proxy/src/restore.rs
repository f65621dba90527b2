//! Writing a [`Ruleset`] into the kernel with one `iptables-restore
//! --noflush` call: declaring a chain flushes it, so a sync declares and
//! refills only the chains whose rules changed since the last one (a full
//! sync declares all of them), deletes the chains that are gone, and leaves
//! every other chain — ours unchanged, and everyone else's — alone.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use skiff_machinery::command::{self, CommandError};

use crate::rules::{self, Rules, Ruleset, Table};

/// iptables-nft takes seconds per 10,000 chains (tens of seconds for a
/// full sync of 10,000 Services): a limit for a hung restore, not a slow one.
const RESTORE_LIMIT: Duration = Duration::from_secs(300);

/// What the kernel holds of ours, as of the last successful sync: each
/// chain's name and a hash of its rules.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    nat: HashMap<Arc<str>, u64>,
    filter: HashMap<Arc<str>, u64>,
}

impl Applied {
    fn of(rs: &Ruleset) -> Applied {
        let hashes = |t: &Table| {
            t.chains
                .iter()
                .map(|(k, v)| (k.clone(), v.digest))
                .collect()
        };
        Applied {
            nat: hashes(&rs.nat),
            filter: hashes(&rs.filter),
        }
    }

    /// Every chain, per table.
    fn chains(&self) -> Vec<(&'static str, String)> {
        let nat = self.nat.keys().map(|k| ("nat", k.to_string()));
        nat.chain(self.filter.keys().map(|k| ("filter", k.to_string())))
            .collect()
    }
}

/// One restore's input and what it does.
#[derive(Debug, Default)]
pub struct Plan {
    pub input: String,
    /// Chains declared and refilled.
    pub chains_written: usize,
    /// Chains removed.
    pub chains_deleted: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.chains_written == 0 && self.chains_deleted == 0
    }
}

/// The restore input taking the kernel from `before` (None: unknown, write
/// everything) to `rs`. `stale` are chains of ours found in the kernel that
/// `rs` lacks, per table (`nat`, `filter`), removed too.
pub fn plan(rs: &Ruleset, before: Option<&Applied>, stale: &[(&str, String)]) -> Plan {
    let mut out = Plan::default();
    for (table_name, table) in [("nat", &rs.nat), ("filter", &rs.filter)] {
        let old = before.map(|b| {
            if table_name == "nat" {
                &b.nat
            } else {
                &b.filter
            }
        });
        let mut changed: Vec<(&Arc<str>, &Rules)> = table
            .chains
            .iter()
            .filter(|(k, v)| old.is_none_or(|o| o.get(*k) != Some(&v.digest)))
            .collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut gone: BTreeSet<&str> = old
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| !table.chains.contains_key(*k))
            .map(|k| &**k)
            .collect();
        for (t, chain) in stale {
            if *t == table_name && !table.chains.contains_key(chain.as_str()) {
                gone.insert(chain);
            }
        }
        if changed.is_empty() && gone.is_empty() {
            continue;
        }
        let _ = writeln!(out.input, "*{table_name}");
        for (name, _) in &changed {
            let _ = writeln!(out.input, ":{name} - [0:0]");
        }
        // Flushed first, so no rule of theirs holds a reference when they go.
        for name in &gone {
            let _ = writeln!(out.input, ":{name} - [0:0]");
        }
        for (_, rules) in &changed {
            out.input.push_str(rules);
        }
        for name in &gone {
            let _ = writeln!(out.input, "-X {name}");
        }
        out.input.push_str("COMMIT\n");
        out.chains_written += changed.len();
        out.chains_deleted += gone.len();
    }
    out
}

/// The jumps from the built-in chains into ours: (table, built-in chain,
/// extra match, our chain). Inserted first in the built-in chain, once.
const JUMPS: [(&str, &str, &str, &str); 10] = [
    ("nat", "PREROUTING", "", rules::SERVICES),
    ("nat", "OUTPUT", "", rules::SERVICES),
    ("nat", "POSTROUTING", "", rules::POSTROUTING),
    (
        "filter",
        "INPUT",
        "-m conntrack --ctstate NEW",
        rules::EXTERNAL_SERVICES,
    ),
    ("filter", "INPUT", "", rules::FIREWALL),
    ("filter", "FORWARD", "", rules::FORWARD),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW",
        rules::FILTER_SERVICES,
    ),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW",
        rules::EXTERNAL_SERVICES,
    ),
    ("filter", "FORWARD", "", rules::FIREWALL),
    (
        "filter",
        "OUTPUT",
        "-m conntrack --ctstate NEW",
        rules::FILTER_SERVICES,
    ),
];
const JUMP_COMMENT: &str = "skiff service proxy";

fn jump_args(op: &str, table: &str, chain: &str, matches: &str, target: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-w", "-t", table, op, chain]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(matches.split_whitespace().map(str::to_string));
    args.extend(
        ["-m", "comment", "--comment", JUMP_COMMENT, "-j", target]
            .iter()
            .map(|s| s.to_string()),
    );
    args
}

async fn iptables(args: &[String]) -> Result<String, CommandError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command::run("iptables", &args, None).await
}

/// Makes sure every jump into our chains exists (the chains must exist).
pub async fn ensure_jumps() -> Result<(), CommandError> {
    for (table, chain, matches, target) in JUMPS {
        if iptables(&jump_args("-C", table, chain, matches, target))
            .await
            .is_err()
        {
            let mut insert = jump_args("-I", table, chain, matches, target);
            insert.insert(5, "1".into());
            iptables(&insert).await?;
        }
    }
    Ok(())
}

/// Removes every jump into our chains (the chains stay, unreachable).
pub async fn remove_jumps() {
    for (table, chain, matches, target) in JUMPS {
        // -D removes one match per call; a crash may have left two.
        for _ in 0..8 {
            if iptables(&jump_args("-D", table, chain, matches, target))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// Chains of ours (the per-service kinds) in the kernel, per table.
pub async fn chains_in_kernel() -> Result<Vec<(&'static str, String)>, CommandError> {
    let mut out = Vec::new();
    for table in ["nat", "filter"] {
        let saved = command::run("iptables-save", &["-t", table], None).await?;
        for line in saved.lines() {
            let Some(decl) = line.strip_prefix(':') else {
                continue;
            };
            let name = decl.split_whitespace().next().unwrap_or_default();
            if rules::SERVICE_CHAIN_PREFIXES
                .iter()
                .any(|p| name.starts_with(p))
            {
                out.push((table, name.to_string()));
            }
        }
    }
    Ok(out)
}

/// The kernel-side state the sync loop carries between syncs.
#[derive(Debug, Default)]
pub struct Kernel {
    applied: Option<Applied>,
}

impl Kernel {
    /// Writes `rs`: changed chains only, or everything when `full` (or when
    /// the last sync failed, as the kernel's state is then unknown). Full
    /// syncs also restore the jumps into our chains.
    pub async fn sync(&mut self, rs: &Ruleset, full: bool) -> Result<Plan, CommandError> {
        let full = full || self.applied.is_none();
        // Chains of ours the rules may lack: when the kernel's state is
        // unknown (a start, a failed sync), whatever it holds — listing it
        // dumps every rule of both tables, 1.8 s at 10,000 Services — and
        // otherwise what the last sync wrote.
        let stale = match (&self.applied, full) {
            (_, false) => Vec::new(),
            (Some(applied), true) => applied.chains(),
            (None, true) => chains_in_kernel().await?,
        };
        let plan = plan(rs, self.applied.as_ref().filter(|_| !full), &stale);
        if !plan.is_empty() {
            // Unknown until the restore succeeds.
            self.applied = None;
            command::run_within(
                "iptables-restore",
                &["--noflush"],
                Some(plan.input.as_bytes()),
                RESTORE_LIMIT,
            )
            .await?;
        }
        if full {
            ensure_jumps().await?;
        }
        self.applied = Some(Applied::of(rs));
        Ok(plan)
    }

    /// Removes the jumps and every chain of ours (`skiff proxy --cleanup`,
    /// and tests).
    pub async fn remove_all() -> Result<(), CommandError> {
        remove_jumps().await;
        let mut chains = chains_in_kernel().await?;
        for c in [
            rules::SERVICES,
            rules::NODEPORTS,
            rules::POSTROUTING,
            rules::MARK_MASQ,
        ] {
            chains.push(("nat", c.to_string()));
        }
        for c in [
            rules::FILTER_SERVICES,
            rules::EXTERNAL_SERVICES,
            rules::FORWARD,
            rules::FIREWALL,
        ] {
            chains.push(("filter", c.to_string()));
        }
        let mut input = String::new();
        for table in ["nat", "filter"] {
            let present = command::run("iptables-save", &["-t", table], None).await?;
            let mine: Vec<&String> = chains
                .iter()
                .filter(|(t, c)| *t == table && present.contains(&format!(":{c} ")))
                .map(|(_, c)| c)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let _ = writeln!(input, "*{table}");
            for c in &mine {
                let _ = writeln!(input, ":{c} - [0:0]");
            }
            for c in &mine {
                let _ = writeln!(input, "-X {c}");
            }
            input.push_str("COMMIT\n");
        }
        if !input.is_empty() {
            command::run_within(
                "iptables-restore",
                &["--noflush"],
                Some(input.as_bytes()),
                RESTORE_LIMIT,
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(chains: &[(&str, &str)]) -> Ruleset {
        let mut rs = Ruleset::default();
        for (k, v) in chains {
            rs.nat
                .chains
                .insert(Arc::from(*k), Rules::new(v.to_string()));
        }
        rs
    }

    #[test]
    fn only_changed_chains_are_written_and_gone_ones_deleted() {
        let a = ruleset(&[
            ("SKIFF-SERVICES", "-A SKIFF-SERVICES -j SKIFF-SVC-A\n"),
            ("SKIFF-SVC-A", "-A SKIFF-SVC-A -j SKIFF-SEP-1\n"),
            (
                "SKIFF-SEP-1",
                "-A SKIFF-SEP-1 -j DNAT --to-destination 10.42.0.7:80\n",
            ),
        ]);
        let full = plan(&a, None, &[]);
        assert_eq!(full.chains_written, 3);
        assert!(full.input.starts_with("*nat\n:SKIFF-SEP-1 - [0:0]\n"));
        assert!(full.input.ends_with("COMMIT\n"));
        let applied = Applied::of(&a);
        assert!(plan(&a, Some(&applied), &[]).is_empty());

        let b = ruleset(&[
            ("SKIFF-SERVICES", "-A SKIFF-SERVICES -j SKIFF-SVC-A\n"),
            ("SKIFF-SVC-A", "-A SKIFF-SVC-A -j SKIFF-SEP-2\n"),
            (
                "SKIFF-SEP-2",
                "-A SKIFF-SEP-2 -j DNAT --to-destination 10.42.0.8:80\n",
            ),
        ]);
        let p = plan(&b, Some(&applied), &[]);
        assert_eq!((p.chains_written, p.chains_deleted), (2, 1));
        assert_eq!(
            p.input,
            "*nat\n:SKIFF-SEP-2 - [0:0]\n:SKIFF-SVC-A - [0:0]\n:SKIFF-SEP-1 - [0:0]\n\
             -A SKIFF-SEP-2 -j DNAT --to-destination 10.42.0.8:80\n-A SKIFF-SVC-A -j SKIFF-SEP-2\n\
             -X SKIFF-SEP-1\nCOMMIT\n"
        );
        // A full sync also removes chains a previous run left behind.
        let stale = [("nat", "SKIFF-SVC-OLD".to_string())];
        let p = plan(&b, None, &stale);
        assert!(p.input.contains("-X SKIFF-SVC-OLD\n"));
        // A full sync that knows the last one's chains removes those gone.
        let p = plan(&b, None, &applied.chains());
        assert_eq!(p.chains_deleted, 1);
        assert!(p.input.contains("-X SKIFF-SEP-1\n"));
    }
}
