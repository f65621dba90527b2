//! A CustomResourceDefinition's served versions as catalog `Resource`s.
//!
//! Everything else in the server takes `&'static Resource`, so a custom
//! resource's is leaked once and reused: an identical definition (the same
//! CRD read again, or after a restart of its controller) finds the one made
//! before, and only a changed definition costs a new one (a few KB per edit
//! of a CRD's spec).

use serde_json::Value;
use skiff_machinery::catalog::{intern, intern_str, Custom, Resource, Subresource, STANDARD_VERBS};
use std::cmp::Ordering;
use std::sync::Mutex;

/// The resources of a CRD's served versions, most preferred version first
/// (upstream's kube-aware version order), or none when its names are not
/// accepted yet.
pub fn resources(crd: &Value) -> Vec<&'static Resource> {
    let spec = crd.get("spec").unwrap_or(&Value::Null);
    let Some(group) = spec.get("group").and_then(Value::as_str) else {
        return Vec::new();
    };
    // Served under the names the naming check accepted, as upstream.
    let names = match crd.pointer("/status/acceptedNames") {
        Some(n)
            if n.get("plural")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty()) =>
        {
            n
        }
        _ => return Vec::new(),
    };
    fn text<'a>(v: &'a Value, key: &str) -> &'a str {
        v.get(key).and_then(Value::as_str).unwrap_or_default()
    }
    let list = |key: &str| -> Vec<&str> {
        names
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    };
    let versions: Vec<&Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let namespaced = text(spec, "scope") != "Cluster";
    let build = |version: &Value, storage: Option<&'static Resource>| {
        let subresources = version.get("subresources").unwrap_or(&Value::Null);
        let status = subresources.get("status").is_some();
        let scale = subresources.get("scale").cloned().unwrap_or(Value::Null);
        let custom = Custom {
            crd: format!("{}.{group}", text(names, "plural")),
            generation: crd
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            schema: version
                .pointer("/schema/openAPIV3Schema")
                .map(without_descriptions)
                .unwrap_or(Value::Null),
            columns: version
                .get("additionalPrinterColumns")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
            scale: scale.clone(),
            storage,
            selectable: version
                .get("selectableFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                .map(|p| intern_str(p.trim_start_matches('.')))
                .collect(),
            webhook_conversion: spec.pointer("/conversion/strategy").and_then(Value::as_str)
                == Some("Webhook"),
            deprecation: version
                .get("deprecated")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .then(|| {
                    version
                        .get("deprecationWarning")
                        .and_then(Value::as_str)
                        .map(String::from)
                        .unwrap_or_else(|| {
                            format!(
                                "{group}/{} {} is deprecated",
                                text(version, "name"),
                                text(names, "kind")
                            )
                        })
                }),
        };
        let subresources: &'static [Subresource] = match (scale.is_null(), status) {
            (true, false) => &[],
            (true, true) => &[Subresource::Status],
            (false, false) => &[Subresource::Scale],
            (false, true) => &[Subresource::Scale, Subresource::Status],
        };
        intern(Resource {
            group: intern_str(group),
            version: intern_str(text(version, "name")),
            kind: intern_str(text(names, "kind")),
            plural: intern_str(text(names, "plural")),
            singular: intern_str(text(names, "singular")),
            namespaced,
            short_names: leak_list(&list("shortNames")),
            categories: leak_list(&list("categories")),
            subresources,
            verbs: STANDARD_VERBS,
            storage_plural: intern_str(text(names, "plural")),
            stored: true,
            custom: Some(intern_custom(custom)),
        })
    };
    let Some(storage_version) = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
    else {
        return Vec::new();
    };
    let storage = build(storage_version, None);
    let mut served: Vec<&Value> = versions
        .iter()
        .copied()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .collect();
    served.sort_by(|a, b| compare_versions(text(a, "name"), text(b, "name")));
    served
        .into_iter()
        .map(|v| {
            if std::ptr::eq(v, *storage_version) {
                storage
            } else {
                build(v, Some(storage))
            }
        })
        .collect()
}

/// A schema without its nodes' descriptions: most of a CRD's text, which
/// validation, pruning and defaulting never read (the OpenAPI documents
/// take them from the CRD itself). Only schema nodes lose them, not a
/// property that happens to be called `description`.
fn without_descriptions(node: &Value) -> Value {
    let Some(m) = node.as_object() else {
        return node.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in m {
        let kept = match (k.as_str(), v) {
            ("description", _) => continue,
            (
                "properties" | "definitions" | "dependencies" | "patternProperties",
                Value::Object(children),
            ) => Value::Object(
                children
                    .iter()
                    .map(|(name, s)| (name.clone(), without_descriptions(s)))
                    .collect(),
            ),
            ("items" | "additionalProperties" | "not" | "additionalItems", _) => {
                without_descriptions(v)
            }
            ("allOf" | "anyOf" | "oneOf", Value::Array(items)) => {
                Value::Array(items.iter().map(without_descriptions).collect())
            }
            _ => v.clone(),
        };
        out.insert(k.clone(), kept);
    }
    Value::Object(out)
}

/// Upstream's kube-aware version order, most preferred first: GA before
/// beta before alpha, higher numbers first, then versions that do not look
/// like Kubernetes versions, alphabetically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (kube_version(a), kube_version(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `v2` → (2, 2, 0), `v1beta3` → (1, 1, 3), `v1alpha1` → (0, 1, 1): a key
/// (stability, major, minor) whose larger values are preferred.
fn kube_version(v: &str) -> Option<(u8, u64, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let major: u64 = rest[..digits].parse().ok().filter(|m| *m > 0)?;
    let tail = &rest[digits..];
    if tail.is_empty() {
        return Some((2, major, 0));
    }
    let (level, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else {
        (0, tail.strip_prefix("alpha")?)
    };
    let minor = minor.parse().ok().filter(|n| *n > 0)?;
    Some((level, major, minor))
}

fn leak_list(items: &[&str]) -> &'static [&'static str] {
    if items.is_empty() {
        return &[];
    }
    let list: Vec<&'static str> = items.iter().map(|s| intern_str(s)).collect();
    Box::leak(list.into_boxed_slice())
}

fn intern_custom(custom: Custom) -> &'static Custom {
    static ALL: Mutex<Vec<&'static Custom>> = Mutex::new(Vec::new());
    let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = all.iter().find(|c| ***c == custom) {
        return found;
    }
    let leaked: &'static Custom = Box::leak(Box::new(custom));
    all.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crontab() -> Value {
        json!({
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}},
                     "subresources": {"status": {}}},
                    {"name": "v2alpha1", "served": false, "storage": false},
                ],
            },
            "status": {"acceptedNames": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]}},
        })
    }

    #[test]
    fn served_versions_in_preference_order() {
        let rs = resources(&crontab());
        let versions: Vec<&str> = rs.iter().map(|r| r.version).collect();
        assert_eq!(versions, ["v1", "v1beta1"]);
        assert_eq!(rs[0].key_prefix(), "/registry/stable.example.com/crontabs/");
        assert_eq!(rs[0].short_names, ["ct"]);
        assert_eq!(rs[0].subresources, [Subresource::Status]);
        assert!(rs[1].subresources.is_empty());
        // v1beta1 objects are stored as v1.
        assert!(std::ptr::eq(
            skiff_machinery::catalog::storage_resource(rs[1]),
            rs[0]
        ));
        // The same definition again is the same resource, not a new leak.
        assert!(std::ptr::eq(resources(&crontab())[0], rs[0]));
    }

    #[test]
    fn not_served_before_its_names_are_accepted() {
        let mut crd = crontab();
        crd.as_object_mut().unwrap().remove("status");
        assert!(resources(&crd).is_empty());
    }

    #[test]
    fn schemas_keep_no_descriptions_but_keep_such_properties() {
        let schema = json!({"type": "object", "description": "a widget", "properties": {
            "description": {"type": "string", "description": "what it is"},
            "parts": {"type": "array", "items": {"type": "object", "description": "one part"}},
        }});
        assert_eq!(
            without_descriptions(&schema),
            json!({"type": "object", "properties": {
                "description": {"type": "string"},
                "parts": {"type": "array", "items": {"type": "object"}},
            }})
        );
    }

    #[test]
    fn kube_aware_order() {
        let mut v = vec![
            "v1alpha1",
            "foo",
            "v2",
            "v1beta2",
            "v1",
            "v1beta1",
            "v11alpha2",
            "bar",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            [
                "v2",
                "v1",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "bar",
                "foo"
            ]
        );
    }
}
