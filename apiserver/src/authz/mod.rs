//! Authorization, as kube-apiserver's `--authorization-mode=Node,RBAC`:
//! members of `system:masters` may do anything; a node is answered by the
//! Node authorizer; everyone else by RBAC over the roles and bindings in
//! the store, which start as upstream's bootstrap policy. A request no one
//! allows is upstream's 403.

mod attributes;
pub mod bootstrap;
pub mod escalation;
pub mod impersonation;
mod node;
mod noderestriction;
mod policy;
pub mod rbac;
pub mod rules;

pub use attributes::Attributes;

use crate::auth::User;
use crate::error::ApiError;
use crate::registry::{Admission, Part, Registry};
use serde_json::{json, Value};
use skiff_machinery::catalog::{self, Resource};
use std::sync::Arc;

/// The group whose members skip authorization (upstream's privileged group).
pub const MASTERS: &str = "system:masters";

pub struct Authorizer {
    pub rbac: rbac::Rbac,
    node: node::NodeAuthorizer,
    /// What the Node authorizer grants nodes outside its graph: the
    /// bootstrap `system:node` role's rules, as compiled in (upstream's
    /// NodeRules), whatever the stored role says.
    node_rules: Vec<rules::PolicyRule>,
}

impl Authorizer {
    pub fn new(registry: Arc<Registry>) -> Authorizer {
        let cache = |group: &str, plural: &str| {
            registry.cache(catalog::lookup(group, "v1", plural).expect("catalog"))
        };
        Authorizer {
            node: node::NodeAuthorizer {
                pods: cache("", "pods"),
                claims: cache("", "persistentvolumeclaims"),
            },
            rbac: rbac::Rbac::new(&registry),
            node_rules: policy::CLUSTER_ROLES
                .iter()
                .filter(|r| r.name == NODE_ROLE)
                .flat_map(|r| r.rules)
                .map(rules::PolicyRule::from_policy)
                .collect(),
        }
    }

    /// Ok if some authorizer allows the request, with what allowed it if
    /// `explain` (access reviews show it); else the reason to give with the
    /// 403 ("" if none).
    pub fn decide(&self, user: &User, a: &Attributes, explain: bool) -> Result<String, String> {
        if is_master(user) {
            return Ok(String::new());
        }
        let mut reasons = Vec::new();
        if let Some(node) = node::node_name(user) {
            let decided = if node.is_empty() {
                Err(format!("unknown node for user {:?}", user.name))
            } else {
                self.node.authorize(node, a, &self.node_rules)
            };
            match decided {
                Ok(()) => return Ok(String::new()),
                Err(reason) if !reason.is_empty() => reasons.push(reason),
                Err(_) => {}
            }
        }
        match self.rbac.authorize(user, a, explain) {
            Ok(allowed_by) => Ok(allowed_by),
            Err(reason) => {
                if !reason.is_empty() {
                    reasons.push(reason);
                }
                Err(reasons.join(", "))
            }
        }
    }

    /// Whether `user` may make the request: authorization, and for a node
    /// NodeRestriction's view of deletes and evictions (a TokenRequest's
    /// is judged with its body, in `admit_node_request`). Members of
    /// system:masters pass without the request being read.
    pub fn check_request(
        &self,
        user: &User,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<(), ApiError> {
        if is_master(user) {
            return Ok(());
        }
        let a = Attributes::of_request(method, path, query);
        self.authorize(user, &a)?;
        if a.subresource != "token" {
            self.admit_node_request(user, &a, None)?;
        }
        Ok(())
    }

    /// The request, or upstream's 403 for it.
    pub fn authorize(&self, user: &User, a: &Attributes) -> Result<(), ApiError> {
        self.decide(user, a, false)
            .map(drop)
            .map_err(|reason| forbidden(user, a, &reason))
    }

    /// NodeRestriction's judgement of a node's delete, eviction or
    /// TokenRequest (`body`), which the registry's write hook does not see.
    pub fn admit_node_request(
        &self,
        user: &User,
        a: &Attributes,
        body: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(node) = node::node_name(user).filter(|n| !n.is_empty()) else {
            return Ok(());
        };
        if is_master(user) {
            return Ok(());
        }
        noderestriction::admit_request(node, a, &self.node.pods, body)
            .map_err(|why| resource_forbidden(&a.group, &a.resource, &a.name, &why))
    }
}

/// The checks of a request's writes that depend on who makes them:
/// NodeRestriction for nodes, RBAC's escalation check for roles and
/// bindings. None for reads, and for members of system:masters, who pass
/// both.
pub fn admission(authz: &Arc<Authorizer>, method: &http::Method, user: &User) -> Option<Admission> {
    let writes = matches!(
        *method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    );
    if !writes || is_master(user) {
        return None;
    }
    let (authz, user) = (authz.clone(), user.clone());
    Some(Admission(Arc::new(
        move |res: &Resource, part: Part, new: &Value, old: Option<&Value>| {
            if let Some(node) = node::node_name(&user).filter(|n| !n.is_empty()) {
                noderestriction::admit_write(node, res, part, new, old)
                    .map_err(|why| object_forbidden(res, new, &why))?;
            }
            escalation::check(&authz, &user, res, new, old)
        },
    )))
}

/// Admission's 403 for an object: `roles.rbac.authorization.k8s.io "x" is forbidden: <why>`.
fn object_forbidden(res: &Resource, object: &Value, why: &str) -> ApiError {
    resource_forbidden(res.group, res.plural, crate::meta::name(object), why)
}

/// Upstream's NewForbidden: `<resource>[.<group>] ["<name>"] is forbidden: <why>`.
fn resource_forbidden(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {name:?} is forbidden: {why}")
    };
    let mut details = json!({"group": group, "kind": resource});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    ApiError {
        details: Some(details),
        ..ApiError::forbidden(message)
    }
}

/// A kind of rbac.authorization.k8s.io/v1 (roles, clusterroles, …).
fn rbac_kind(plural: &str) -> &'static Resource {
    catalog::lookup("rbac.authorization.k8s.io", "v1", plural).expect("rbac kinds in the catalog")
}

/// The namespace and name of a service account's user name
/// (`system:serviceaccount:<ns>:<name>`).
fn service_account_of(user_name: &str) -> Option<(&str, &str)> {
    user_name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
}

/// Whether the user skips authorization and the user-dependent admission.
fn is_master(user: &User) -> bool {
    user.groups.iter().any(|g| g == MASTERS)
}

/// Whether the user is a node, as far as the Node authorizer is concerned.
pub fn is_node(user: &User) -> bool {
    node::node_name(user).is_some()
}

/// The ClusterRole whose rules the Node authorizer grants nodes.
const NODE_ROLE: &str = "system:node";

/// Upstream's 403: `pods "x" is forbidden: User "u" cannot get resource
/// "pods" in API group "" in the namespace "d"[: reason]`.
pub fn forbidden(user: &User, a: &Attributes, reason: &str) -> ApiError {
    let mut why = if !a.resource_request {
        format!("User {:?} cannot {} path {:?}", user.name, a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
            user.name, a.verb, resource, a.group
        )
    };
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    if !a.resource_request {
        return ApiError::forbidden(format!("forbidden: {why}"));
    }
    resource_forbidden(&a.group, &a.resource, &a.name, &why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_is_worded_as_upstream() {
        let user = User {
            name: "system:serviceaccount:default:default".into(),
            ..User::default()
        };
        let a = Attributes::of_request(&http::Method::GET, "/api/v1/namespaces/default/pods", None);
        let e = forbidden(&user, &a, "");
        assert_eq!(e.code, 403);
        assert_eq!(e.message, "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"");
        let a = Attributes::of_request(&http::Method::DELETE, "/apis/apps/v1/deployments", None);
        assert!(forbidden(&user, &a, "").message.ends_with("cannot deletecollection resource \"deployments\" in API group \"apps\" at the cluster scope"));
        let a = Attributes::of_request(
            &http::Method::GET,
            "/apis/apps/v1/namespaces/d/deployments/web/scale",
            None,
        );
        assert!(forbidden(&user, &a, "")
            .message
            .starts_with("deployments.apps \"web\" is forbidden: User"));
        let a = Attributes::of_request(&http::Method::GET, "/logs", None);
        assert_eq!(
            forbidden(&user, &a, "").message,
            "forbidden: User \"system:serviceaccount:default:default\" cannot get path \"/logs\""
        );
    }
}
