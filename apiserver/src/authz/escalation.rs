//! RBAC's escalation check, as upstream's RBAC storage makes it: a user
//! may write a Role or ClusterRole only with rules they hold themselves
//! (or the `escalate` verb on it), and a binding only to a role whose rules
//! they hold (or the `bind` verb on it). Members of system:masters may do
//! either. Writes that leave the rules, role and subjects as they were
//! (labels, owners, finalizers) are not checked.

use super::rules::PolicyRule;
use super::{Attributes, Authorizer};
use crate::auth::User;
use crate::error::ApiError;
use serde_json::Value;
use skiff_machinery::catalog::Resource;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Whether `user` (not a member of system:masters) may write `new` (over `old`).
pub fn check(
    authz: &Authorizer,
    user: &User,
    res: &Resource,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if res.group != RBAC_GROUP {
        return Ok(());
    }
    let namespace = crate::meta::namespace(new).unwrap_or("").to_string();
    let name = crate::meta::name(new).to_string();
    let forbidden = |why: String| super::object_forbidden(res, new, &why);
    let may = |verb: &str, resource: &str, role: &str| {
        let a = Attributes {
            verb: verb.into(),
            resource_request: true,
            group: RBAC_GROUP.into(),
            resource: resource.into(),
            namespace: namespace.clone(),
            name: role.into(),
            ..Attributes::default()
        };
        authz.decide(user, &a, false).is_ok()
    };
    let unchanged =
        |fields: &[&str]| old.is_some_and(|old| fields.iter().all(|f| old[f] == new[f]));
    let requested: Vec<PolicyRule> = match res.plural {
        "roles" | "clusterroles" => {
            if unchanged(&["rules", "aggregationRule"]) || may("escalate", res.plural, &name) {
                return Ok(());
            }
            if new.get("aggregationRule").is_some_and(|r| !r.is_null()) {
                return Err(forbidden(
                    "must have cluster-admin privileges to use the aggregationRule".into(),
                ));
            }
            new["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(PolicyRule::from_json)
                .collect()
        }
        "rolebindings" | "clusterrolebindings" => {
            if unchanged(&["roleRef", "subjects"]) {
                return Ok(());
            }
            let role = new
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let cluster =
                new.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole");
            if may("bind", if cluster { "clusterroles" } else { "roles" }, role) {
                return Ok(());
            }
            let rules = if cluster {
                authz.rbac.cluster_role(role)
            } else {
                authz.rbac.role(&namespace, role)
            };
            match rules {
                Some(rules) => rules.to_vec(),
                None => {
                    let kind = if cluster { "clusterrole" } else { "role" };
                    return Err(forbidden(format!("{kind}.{RBAC_GROUP} {role:?} not found")));
                }
            }
        }
        _ => return Ok(()),
    };
    let held = authz.rbac.rules_for(user, &namespace);
    let missing = uncovered(&held.rules, &requested);
    if missing.is_empty() {
        return Ok(());
    }
    let mut why = format!(
        "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        user.groups,
        missing.join("\n")
    );
    if !held.errors.is_empty() {
        why.push_str(&format!("; resolution errors: [{}]", held.errors.join(" ")));
    }
    Err(forbidden(why))
}

/// The requested permissions, one verb of one resource (or URL) each, that
/// no owned rule covers, worded as upstream lists them.
fn uncovered(owned: &[PolicyRule], requested: &[PolicyRule]) -> Vec<String> {
    let mut missing: Vec<String> = requested
        .iter()
        .flat_map(breakdown)
        .filter(|want| !owned.iter().any(|have| covers(have, want)))
        .map(|r| describe(&r))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// A rule split into rules of one verb, group, resource and name (or one
/// verb and URL).
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = Vec::new();
    for group in &rule.groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    verbs: one(verb),
                    groups: one(group),
                    resources: one(resource),
                    ..PolicyRule::default()
                };
                if rule.names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(rule.names.iter().map(|n| PolicyRule {
                        names: one(n),
                        ..base.clone()
                    }));
                }
            }
        }
    }
    for url in &rule.urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                verbs: one(verb),
                urls: one(url),
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    has(set, "*") || wanted.iter().all(|w| has(set, w))
}

/// Whether `have` covers a broken-down rule `want`.
fn covers(have: &PolicyRule, want: &PolicyRule) -> bool {
    let resources = has(&have.resources, "*")
        || want.resources.iter().all(|r| {
            has(&have.resources, r)
                || r.split_once('/').is_some_and(|(res, sub)| {
                    has(&have.resources, &format!("{res}/*"))
                        || has(&have.resources, &format!("*/{sub}"))
                })
        });
    let urls = want.urls.iter().all(|u| {
        have.urls.iter().any(|h| {
            h == u
                || h.strip_suffix('*')
                    .is_some_and(|prefix| u.starts_with(prefix))
        })
    });
    let names = if want.names.is_empty() {
        have.names.is_empty()
    } else {
        have.names.is_empty() || want.names.iter().all(|n| has(&have.names, n))
    };
    has_all(&have.verbs, &want.verbs)
        && has_all(&have.groups, &want.groups)
        && resources
        && urls
        && names
}

/// Upstream's compact form of a rule: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
fn describe(r: &PolicyRule) -> String {
    let list = |v: &[String]| {
        let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", quoted.join(" "))
    };
    let mut parts = Vec::new();
    if !r.groups.is_empty() {
        parts.push(format!("APIGroups:{}", list(&r.groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:{}", list(&r.resources)));
    }
    if !r.names.is_empty() {
        parts.push(format!("ResourceNames:{}", list(&r.names)));
    }
    if !r.urls.is_empty() {
        parts.push(format!("NonResourceURLs:{}", list(&r.urls)));
    }
    parts.push(format!("Verbs:{}", list(&r.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            groups: v(groups),
            resources: v(resources),
            names: v(names),
            urls: vec![],
        }
    }

    #[test]
    fn only_what_is_held_may_be_granted() {
        let held = vec![
            rule(&["get", "list"], &[""], &["pods", "pods/*"], &[]),
            rule(&["*"], &["apps"], &["deployments"], &["web"]),
        ];
        assert!(uncovered(&held, &[rule(&["get"], &[""], &["pods", "pods/log"], &[])]).is_empty());
        assert!(uncovered(
            &held,
            &[rule(&["update"], &["apps"], &["deployments"], &["web"])]
        )
        .is_empty());
        assert_eq!(
            uncovered(&held, &[rule(&["get", "delete"], &[""], &["pods"], &[])]),
            vec!["{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"]
        );
        // Names held do not cover every name.
        assert_eq!(
            uncovered(&held, &[rule(&["get"], &["apps"], &["deployments"], &[])]).len(),
            1
        );
        let all = vec![rule(&["*"], &["*"], &["*"], &[])];
        assert!(uncovered(
            &all,
            &[rule(
                &["escalate"],
                &["rbac.authorization.k8s.io"],
                &["roles"],
                &[]
            )]
        )
        .is_empty());
    }
}
