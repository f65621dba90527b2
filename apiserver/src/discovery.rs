//! Discovery: `/api`, `/apis` (legacy and aggregated v2, told apart by the
//! Accept header and answered with the matching Content-Type), `/api/v1`,
//! `/apis/<group>` and `/apis/<group>/<version>`.

use serde_json::{json, Value};
use skiff_machinery::catalog::{Resource, Served};

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Does the client accept the aggregated (v2 or v2beta1) form?
pub fn wants_aggregated(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    for part in accept.split(',') {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some(
                    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
                );
            }
            if p.contains("v=v2") {
                return Some(AGGREGATED_CONTENT_TYPE);
            }
        }
    }
    None
}

fn verbs(res: &Resource) -> Vec<&'static str> {
    res.verbs.to_vec()
}

fn api_resource(res: &Resource) -> Vec<Value> {
    let mut out = vec![json!({
        "name": res.plural,
        "singularName": res.singular,
        "namespaced": res.namespaced,
        "kind": res.kind,
        "verbs": verbs(res),
        "shortNames": res.short_names,
        "categories": res.categories,
        "storageVersionHash": "",
    })];
    for sub in res.subresources {
        let (group, version, kind) =
            sub.response_kind()
                .unwrap_or((res.group, res.version, res.kind));
        let mut r = json!({
            "name": format!("{}/{}", res.plural, sub.name()),
            "singularName": "",
            "namespaced": res.namespaced,
            "kind": if kind.is_empty() { res.kind } else { kind },
            "verbs": sub.verbs(),
        });
        if group != res.group || version != res.version {
            r["group"] = json!(group);
            r["version"] = json!(version);
        }
        out.push(r);
    }
    out
}

/// `APIResourceList` of one group/version.
pub fn resource_list(served: &Served, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = served
        .in_group_version(group, version)
        .flat_map(api_resource)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

pub fn legacy_api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

pub fn group_list(served: &Served) -> Value {
    let groups: Vec<Value> = served
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| api_group(g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(served: &Served, name: &str) -> Option<Value> {
    served
        .groups()
        .into_iter()
        .find(|(g, _)| *g == name && !g.is_empty())
        .map(|(g, vs)| {
            let mut v = api_group(g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

fn aggregated_resource(res: &Resource) -> Value {
    let subs: Vec<Value> = res
        .subresources
        .iter()
        .map(|sub| {
            let (g, v, k) = sub
                .response_kind()
                .unwrap_or((res.group, res.version, res.kind));
            let mut s = json!({"subresource": sub.name(), "verbs": sub.verbs()});
            if !k.is_empty() {
                s["responseKind"] = json!({"group": g, "version": v, "kind": k});
            }
            s
        })
        .collect();
    let mut r = json!({
        "resource": res.plural,
        "responseKind": {"group": res.group, "version": res.version, "kind": res.kind},
        "scope": if res.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": res.singular,
        "verbs": res.verbs,
    });
    if !res.short_names.is_empty() {
        r["shortNames"] = json!(res.short_names);
    }
    if !res.categories.is_empty() {
        r["categories"] = json!(res.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// `APIGroupDiscoveryList` for the core group (`legacy`) or all named groups.
pub fn aggregated(served: &Served, legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = served
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = served
                        .in_group_version(g, v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}
