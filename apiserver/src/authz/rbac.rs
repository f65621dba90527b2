//! The RBAC authorizer: ClusterRoleBindings, then the RoleBindings of the
//! request's namespace, each granting its role's rules to its subjects, as
//! upstream's RBAC authorizer visits them. Read from the watch caches
//! through an index rebuilt only when one of the four kinds changed.

use super::rules::PolicyRule;
use super::Attributes;
use crate::auth::User;
use crate::registry::Registry;
use crate::watchcache::WatchCache;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Debug)]
struct Binding {
    name: String,
    /// "" for a ClusterRoleBinding.
    namespace: String,
    /// The ClusterRole (`cluster`) or Role of the binding's namespace it grants.
    cluster: bool,
    role: String,
    subjects: Vec<Subject>,
}

/// The four RBAC kinds as last read.
#[derive(Debug, Default)]
struct Index {
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_bindings: Vec<Binding>,
    role_bindings: HashMap<String, Vec<Binding>>,
}

pub struct Rbac {
    /// The watch caches of `KINDS`, in that order.
    caches: Vec<Arc<WatchCache>>,
    /// The caches' change counters the index was built at (none yet: MAX),
    /// and the index.
    index: Mutex<([u64; 4], Arc<Index>)>,
}

const KINDS: [&str; 4] = [
    "clusterroles",
    "roles",
    "clusterrolebindings",
    "rolebindings",
];

/// What the rules a user holds in a namespace come to.
pub struct Rules {
    pub rules: Vec<PolicyRule>,
    /// Roles that bindings of the user refer to but that do not exist.
    pub errors: Vec<String>,
}

impl Rbac {
    pub fn new(registry: &Registry) -> Rbac {
        Rbac {
            caches: KINDS
                .iter()
                .map(|k| registry.cache(super::rbac_kind(k)))
                .collect(),
            index: Mutex::new(([u64::MAX; 4], Arc::default())),
        }
    }

    fn index(&self) -> Arc<Index> {
        let caches = &self.caches;
        let counters: [u64; 4] = std::array::from_fn(|i| caches[i].published());
        let mut held = self.index.lock().expect("rbac index lock");
        if held.0 != counters {
            let objects = |i: usize| -> Vec<Value> {
                let (entries, _) = caches[i].list(&caches[i].prefix);
                entries.iter().map(|e| e.object()).collect()
            };
            *held = (
                counters,
                Arc::new(Index::build(objects(0), objects(1), objects(2), objects(3))),
            );
        }
        held.1.clone()
    }

    /// Whether a binding grants the request, and, if `explain`, which
    /// (upstream's reason: `RBAC: allowed by ClusterRoleBinding "x" of
    /// ClusterRole "y" to Group "z"`); else the reason upstream gives
    /// (missing roles), if any.
    pub fn authorize(&self, user: &User, a: &Attributes, explain: bool) -> Result<String, String> {
        let index = self.index();
        let mut errors = Vec::new();
        let mut allowed_by = None;
        index.visit(user, &a.namespace, &mut errors, &mut |rules, b| {
            if super::rules::any_allows(rules, a) {
                allowed_by = Some(if explain {
                    format!("RBAC: allowed by {}", b.describe(user))
                } else {
                    String::new()
                });
            }
            allowed_by.is_some()
        });
        if let Some(reason) = allowed_by {
            return Ok(reason);
        }
        Err(match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        })
    }

    /// Every rule the user holds in `namespace` (cluster-wide ones too).
    pub fn rules_for(&self, user: &User, namespace: &str) -> Rules {
        let index = self.index();
        let mut out = Rules {
            rules: Vec::new(),
            errors: Vec::new(),
        };
        let mut collected = Vec::new();
        index.visit(user, namespace, &mut out.errors, &mut |rules, _| {
            collected.extend(rules.iter().cloned());
            false
        });
        out.rules = collected;
        out
    }

    /// The rules of a Role, if it exists.
    pub fn role(&self, namespace: &str, name: &str) -> Option<Arc<[PolicyRule]>> {
        self.index()
            .roles
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The rules of a ClusterRole, if it exists.
    pub fn cluster_role(&self, name: &str) -> Option<Arc<[PolicyRule]>> {
        self.index().cluster_roles.get(name).cloned()
    }
}

fn rules_of(role: &Value) -> Arc<[PolicyRule]> {
    role.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(PolicyRule::from_json)
        .collect()
}

fn binding(b: &Value) -> Binding {
    let subjects = b
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let field = |f: &str| s.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            Subject {
                kind: field("kind"),
                name: field("name"),
                namespace: field("namespace"),
            }
        })
        .collect();
    let role_ref = |f: &str| {
        b.pointer(&format!("/roleRef/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    Binding {
        name: meta(b, "name"),
        namespace: meta(b, "namespace"),
        cluster: role_ref("kind") == "ClusterRole",
        role: role_ref("name").to_string(),
        subjects,
    }
}

fn meta(o: &Value, f: &str) -> String {
    o.pointer(&format!("/metadata/{f}"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl Index {
    fn build(
        cluster_roles: Vec<Value>,
        roles: Vec<Value>,
        cluster_bindings: Vec<Value>,
        role_bindings: Vec<Value>,
    ) -> Index {
        let mut index = Index {
            cluster_roles: cluster_roles
                .iter()
                .map(|r| (meta(r, "name"), rules_of(r)))
                .collect(),
            roles: roles
                .iter()
                .map(|r| ((meta(r, "namespace"), meta(r, "name")), rules_of(r)))
                .collect(),
            cluster_bindings: cluster_bindings
                .iter()
                .map(binding)
                .filter(|b| b.cluster)
                .collect(),
            role_bindings: HashMap::new(),
        };
        for b in &role_bindings {
            index
                .role_bindings
                .entry(meta(b, "namespace"))
                .or_default()
                .push(binding(b));
        }
        index
    }

    /// Calls `visit` with the rules of every binding that applies to the
    /// user, cluster bindings first, until it returns true; roles that do
    /// not exist are noted in `errors`.
    fn visit(
        &self,
        user: &User,
        namespace: &str,
        errors: &mut Vec<String>,
        visit: &mut dyn FnMut(&[PolicyRule], &Binding) -> bool,
    ) {
        for b in &self.cluster_bindings {
            if applies(b, user, "") && self.grant(b, "", errors, visit) {
                return;
            }
        }
        if namespace.is_empty() {
            return;
        }
        for b in self.role_bindings.get(namespace).into_iter().flatten() {
            if applies(b, user, namespace) && self.grant(b, namespace, errors, visit) {
                return;
            }
        }
    }

    fn grant(
        &self,
        b: &Binding,
        namespace: &str,
        errors: &mut Vec<String>,
        visit: &mut dyn FnMut(&[PolicyRule], &Binding) -> bool,
    ) -> bool {
        let rules = if b.cluster {
            self.cluster_roles.get(&b.role)
        } else {
            self.roles.get(&(namespace.to_string(), b.role.clone()))
        };
        match rules {
            Some(rules) => visit(rules, b),
            None => {
                let kind = if b.cluster { "clusterrole" } else { "role" };
                errors.push(format!(
                    "{kind}.rbac.authorization.k8s.io \"{}\" not found",
                    b.role
                ));
                false
            }
        }
    }
}

impl Binding {
    /// As upstream's reasons name a binding and the subject that matched.
    fn describe(&self, user: &User) -> String {
        let role_kind = if self.cluster { "ClusterRole" } else { "Role" };
        let subject = self
            .subjects
            .iter()
            .find(|s| subject_is(s, user, &self.namespace))
            .map(|s| match s.kind.as_str() {
                "ServiceAccount" => {
                    let ns = if s.namespace.is_empty() {
                        &self.namespace
                    } else {
                        &s.namespace
                    };
                    format!("ServiceAccount \"{ns}/{}\"", s.name)
                }
                kind => format!("{kind} {:?}", s.name),
            })
            .unwrap_or_default();
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {role_kind} {:?} to {subject}",
                self.name, self.role
            )
        } else {
            format!(
                "RoleBinding \"{}/{}\" of {role_kind} {:?} to {subject}",
                self.name, self.namespace, self.role
            )
        }
    }
}

/// Whether a binding (in `namespace`, "" for a cluster binding) names the user.
fn applies(b: &Binding, user: &User, namespace: &str) -> bool {
    b.subjects.iter().any(|s| subject_is(s, user, namespace))
}

fn subject_is(s: &Subject, user: &User, namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                namespace
            } else {
                &s.namespace
            };
            !ns.is_empty()
                && super::service_account_of(&user.name)
                    .is_some_and(|(n, name)| n == ns && name == s.name)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    fn allowed(index: &Index, u: &User, ns: &str, verb: &str, resource: &str) -> bool {
        let a = Attributes {
            verb: verb.into(),
            namespace: ns.into(),
            resource: resource.into(),
            resource_request: true,
            ..Attributes::default()
        };
        let mut errors = vec![];
        let mut ok = false;
        index.visit(u, ns, &mut errors, &mut |rules, _| {
            ok = super::super::rules::any_allows(rules, &a);
            ok
        });
        ok
    }

    #[test]
    fn bindings_grant_their_roles_to_their_subjects() {
        let index = Index::build(
            vec![
                json!({"metadata": {"name": "view"}, "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
            ],
            vec![
                json!({"metadata": {"name": "cm", "namespace": "team"}, "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            ],
            vec![
                json!({"metadata": {"name": "viewers"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "Group", "name": "viewers"}]}),
            ],
            vec![
                json!({"metadata": {"name": "b", "namespace": "team"}, "roleRef": {"kind": "Role", "name": "cm"}, "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
                json!({"metadata": {"name": "c", "namespace": "team"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "ann"}]}),
            ],
        );
        let bot = user("system:serviceaccount:team:bot", &[]);
        assert!(allowed(&index, &bot, "team", "delete", "configmaps"));
        assert!(!allowed(&index, &bot, "other", "delete", "configmaps"));
        assert!(!allowed(&index, &bot, "team", "get", "pods"));
        let ann = user("ann", &[]);
        assert!(allowed(&index, &ann, "team", "list", "pods"));
        assert!(
            !allowed(&index, &ann, "", "list", "pods"),
            "a RoleBinding grants in its namespace only"
        );
        let viewer = user("bob", &["viewers"]);
        assert!(allowed(&index, &viewer, "", "list", "pods"));
        assert!(allowed(&index, &viewer, "any", "get", "pods"));
        let other_sa = user("system:serviceaccount:other:bot", &[]);
        assert!(!allowed(&index, &other_sa, "team", "get", "configmaps"));
    }

    #[test]
    fn missing_roles_are_reported() {
        let index = Index::build(
            vec![],
            vec![],
            vec![
                json!({"metadata": {"name": "x"}, "roleRef": {"kind": "ClusterRole", "name": "gone"}, "subjects": [{"kind": "User", "name": "ann"}]}),
            ],
            vec![],
        );
        let mut errors = vec![];
        index.visit(&user("ann", &[]), "", &mut errors, &mut |_, _| false);
        assert_eq!(
            errors,
            vec!["clusterrole.rbac.authorization.k8s.io \"gone\" not found"]
        );
    }
}
