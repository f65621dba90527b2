//! What a request asks to do, read from its method, path and query the way
//! upstream's RequestInfoFactory reads them, before anything checks that
//! the resource exists: so an unknown resource is forbidden, not 404, to
//! a user who may not see it.

use skiff_machinery::fields::Selector;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection
    /// (resources); the lower-cased method (non-resource paths).
    pub verb: String,
    pub resource_request: bool,
    pub path: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// Path segments after `/namespaces/<ns>/` that belong to the namespace itself.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl Attributes {
    pub fn of_request(method: &http::Method, path: &str, query: Option<&str>) -> Attributes {
        let mut a = Attributes {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
            ..Attributes::default()
        };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => {
                a.version = version.to_string();
                rest
            }
            ["apis", group, version, rest @ ..] if !rest.is_empty() => {
                a.group = group.to_string();
                a.version = version.to_string();
                rest
            }
            _ => return a,
        };
        a.resource_request = true;
        let mut rest = rest;
        let mut via_method = true;
        if let [special @ ("watch" | "proxy"), tail @ ..] = rest {
            if tail.is_empty() {
                return a;
            }
            a.verb = special.to_string();
            rest = tail;
            via_method = false;
        } else {
            a.verb = match *method {
                http::Method::POST => "create",
                http::Method::GET | http::Method::HEAD => "get",
                http::Method::PUT => "update",
                http::Method::PATCH => "patch",
                http::Method::DELETE => "delete",
                _ => "",
            }
            .to_string();
        }
        if let ["namespaces", ns, tail @ ..] = rest {
            a.namespace = ns.to_string();
            if !tail.is_empty() && !NAMESPACE_SUBRESOURCES.contains(&tail[0]) {
                rest = tail;
            }
        }
        if let Some(resource) = rest.first() {
            a.resource = resource.to_string();
        }
        if let Some(name) = rest.get(1) {
            a.name = name.to_string();
        }
        if let Some(sub) = rest.get(2) {
            if a.verb != "watch" && a.verb != "proxy" {
                a.subresource = sub.to_string();
            }
        }
        let query = || crate::http::request::Query::parse(query).unwrap_or_default();
        if via_method && a.name.is_empty() && a.verb == "get" {
            let q = query();
            a.verb = if q.flag("watch") { "watch" } else { "list" }.to_string();
            a.name = name_selected(&q);
        } else if !via_method && a.name.is_empty() && a.verb == "watch" {
            a.name = name_selected(&query());
        }
        if via_method && a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }
}

/// The name a `metadata.name=<name>` field selector pins, if it is a valid
/// path segment (upstream authorizes such a list as one of that object).
fn name_selected(q: &crate::http::request::Query) -> String {
    q.get("fieldSelector")
        .and_then(|s| Selector::parse(s).ok())
        .and_then(|s| s.exact_name().map(String::from))
        .filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '%']))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn of(method: Method, path: &str, query: Option<&str>) -> Attributes {
        Attributes::of_request(&method, path, query)
    }

    #[test]
    fn resource_requests() {
        let a = of(Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!(
            (a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()),
            ("list", "default", "pods")
        );
        let a = of(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            Some("watch=true"),
        );
        assert_eq!(a.verb, "watch");
        let a = of(
            Method::GET,
            "/api/v1/namespaces/d/pods",
            Some("fieldSelector=metadata.name%3Dp1"),
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "p1"));
        let a = of(Method::POST, "/api/v1/namespaces/d/pods/p/exec", None);
        assert_eq!(
            (a.verb.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("create", "p", "exec")
        );
        let a = of(
            Method::PATCH,
            "/apis/apps/v1/namespaces/d/deployments/web/scale",
            None,
        );
        assert_eq!(
            (
                a.group.as_str(),
                a.resource.as_str(),
                a.subresource.as_str()
            ),
            ("apps", "deployments", "scale")
        );
        let a = of(Method::DELETE, "/api/v1/namespaces/d/configmaps", None);
        assert_eq!(a.verb, "deletecollection");
        let a = of(Method::GET, "/api/v1/watch/namespaces/d/pods/p", None);
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.name.as_str()),
            ("watch", "pods", "p")
        );
    }

    #[test]
    fn namespaces_are_their_own_namespace() {
        let a = of(Method::GET, "/api/v1/namespaces/team", None);
        assert_eq!(
            (
                a.verb.as_str(),
                a.namespace.as_str(),
                a.resource.as_str(),
                a.name.as_str()
            ),
            ("get", "team", "namespaces", "team")
        );
        let a = of(Method::PUT, "/api/v1/namespaces/team/finalize", None);
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("namespaces", "team", "finalize")
        );
        let a = of(Method::GET, "/api/v1/namespaces", None);
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("list", ""));
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource() {
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/healthz",
            "/openapi/v3",
        ] {
            let a = of(Method::GET, p, None);
            assert!(!a.resource_request, "{p}");
            assert_eq!(a.verb, "get");
        }
    }
}
