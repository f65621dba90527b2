//! What a request names (group/version/resource, namespace, name, subresource),
//! its query parameters, and its body decoded from JSON or YAML.

use crate::error::ApiError;
use bytes::Bytes;
use serde_json::Value;
use skiff_machinery::catalog::{Resource, Served, Subresource};
use std::collections::HashMap;

/// Largest request body accepted (upstream's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Target {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Subresource>,
}

/// Parses `/api/v1/...` and `/apis/<g>/<v>/...` paths of the resources served.
pub fn parse_path(path: &str, served: &Served) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::not_found_path()),
    };
    let resolve = |plural: &str| {
        served
            .lookup(group, version, plural)
            .ok_or_else(ApiError::not_found_path)
    };
    let sub_of = |res: &Resource, s: &str| {
        res.subresources
            .iter()
            .copied()
            .find(|x| x.name() == s)
            .ok_or_else(ApiError::not_found_path)
    };
    let target = match rest {
        // /namespaces/{ns}/{resource}[/{name}[/{sub}]] for namespaced kinds…
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            let res = resolve(plural)?;
            if !res.namespaced {
                return Err(ApiError::not_found_path());
            }
            let (name, sub) = match tail {
                [] => (None, None),
                [name] => (Some(name.to_string()), None),
                [name, sub] => (Some(name.to_string()), Some(sub_of(res, sub)?)),
                _ => return Err(ApiError::not_found_path()),
            };
            Target {
                res,
                namespace: Some(ns.to_string()),
                name,
                sub,
            }
        }
        // …and /{resource}[/{name}[/{sub}]] for cluster kinds and all-namespace lists.
        [plural, tail @ ..] => {
            let res = resolve(plural)?;
            let (name, sub) = match tail {
                [] => (None, None),
                [name] if !res.namespaced => (Some(name.to_string()), None),
                [name, sub] if !res.namespaced => (Some(name.to_string()), Some(sub_of(res, sub)?)),
                _ => return Err(ApiError::not_found_path()),
            };
            Target {
                res,
                namespace: None,
                name,
                sub,
            }
        }
        [] => return Err(ApiError::not_found_path()),
    };
    Ok(target)
}

/// Query parameters (the last value wins, except `command` which repeats).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub map: HashMap<String, String>,
    pub all: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let all: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        Ok(Query {
            map: all.iter().cloned().collect(),
            all,
        })
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}: supported values: \"All\""
            ))),
        }
    }
}

/// Media type without parameters, lowercased.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a JSON or YAML body into a value; malformed input is a 400.
pub fn decode_body(content_type: &str, body: &Bytes) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::too_large());
    }
    match content_type {
        "application/yaml" | "application/apply-patch+yaml" => {
            let v: Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            Ok(v)
        }
        "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json"
        | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}"))),
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf: {e}"))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_path(
            "/api/v1/namespaces/default/pods/x/status",
            &Served::default(),
        )
        .unwrap();
        assert_eq!(
            (
                t.res.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub
            ),
            (
                "pods",
                Some("default"),
                Some("x"),
                Some(Subresource::Status)
            )
        );
        let t = parse_path("/api/v1/namespaces/kube-system", &Served::default()).unwrap();
        assert_eq!(
            (t.res.plural, t.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let t = parse_path("/api/v1/namespaces/foo/status", &Served::default()).unwrap();
        assert_eq!(
            (t.res.plural, t.name.as_deref(), t.sub),
            ("namespaces", Some("foo"), Some(Subresource::Status))
        );
        let t = parse_path("/apis/apps/v1/deployments", &Served::default()).unwrap();
        assert_eq!((t.res.plural, t.namespace), ("deployments", None));
        let t = parse_path(
            "/apis/apps/v1/namespaces/a/deployments/web/scale",
            &Served::default(),
        )
        .unwrap();
        assert_eq!(t.sub, Some(Subresource::Scale));
        assert!(parse_path("/api/v1/pods/x", &Served::default()).is_err());
        assert!(parse_path("/apis/apps/v1/namespaces/a/bogus", &Served::default()).is_err());
    }
}
