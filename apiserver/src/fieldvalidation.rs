//! Server-side field validation: fields an object sets that its kind's schema
//! does not declare. Upstream never stores such fields (decoding into the Go
//! types drops them), so they are always pruned; `fieldValidation=Strict` turns
//! them into a 400 and `Warn` into `Warning` headers.

use crate::openapi;
use serde_json::{Map, Value};
use skiff_machinery::catalog::Resource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl Mode {
    pub fn parse(s: Option<&str>) -> Mode {
        match s {
            Some("Strict") => Mode::Strict,
            Some("Ignore") => Mode::Ignore,
            _ => Mode::Warn,
        }
    }
}

/// Removes undeclared fields and returns their paths (`spec.foo`, `bogus`).
pub fn prune_unknown(res: &Resource, obj: &mut Value) -> Vec<String> {
    if res.custom.is_some() {
        return prune_custom(res, obj);
    }
    let set = openapi::schema_set(res.group, res.version);
    let Some(root) = set.roots.get(res.kind) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    if let Some(schema) = set.defs.get(root) {
        walk(&set.defs, schema, obj, "", &mut unknown, 0);
    }
    unknown
}

/// A custom resource: its schema prunes all but `metadata`, which is
/// pruned to ObjectMeta's fields as upstream's decoding does.
fn prune_custom(res: &Resource, obj: &mut Value) -> Vec<String> {
    let mut unknown = crate::crd::prune_object(res, obj);
    let core = openapi::schema_set("", "v1");
    let meta = core
        .defs
        .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    if let (Some(schema), Some(m)) = (meta, obj.get_mut("metadata")) {
        walk(&core.defs, schema, m, "metadata", &mut unknown, 0);
    }
    unknown
}

fn resolve<'a>(defs: &'a Map<String, Value>, mut schema: &'a Value) -> &'a Value {
    for _ in 0..8 {
        let r = schema
            .get("$ref")
            .or_else(|| schema.pointer("/allOf/0/$ref"))
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next());
        match r.and_then(|name| defs.get(name)) {
            Some(next) => schema = next,
            None => break,
        }
    }
    schema
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    defs: &Map<String, Value>,
    schema: &Value,
    v: &mut Value,
    path: &str,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let schema = resolve(defs, schema);
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let mut drop = Vec::new();
                for (k, child) in map.iter_mut() {
                    match props.get(k) {
                        Some(s) => walk(defs, s, child, &join(path, k), unknown, depth + 1),
                        None if path.is_empty() && (k == "apiVersion" || k == "kind") => {}
                        None => drop.push(k.clone()),
                    }
                }
                for k in drop {
                    map.remove(&k);
                    unknown.push(join(path, &k));
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in map.iter_mut() {
                    walk(defs, ap, child, &join(path, k), unknown, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(
                        defs,
                        item_schema,
                        item,
                        &format!("{path}[{i}]"),
                        unknown,
                        depth + 1,
                    );
                }
            }
        }
        _ => {}
    }
}

/// Upstream's strict-decoding message for unknown fields.
pub fn strict_error(res: &Resource, unknown: &[String]) -> crate::error::ApiError {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    crate::error::ApiError::bad_request(format!(
        "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = res.kind,
        v = res.version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_machinery::catalog;

    #[test]
    fn prunes_and_reports() {
        let res = catalog::lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"a": "b"}, "bogusMeta": 1},
            "spec": {"replicas": 1, "foo": true, "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x"}]}}},
            "extra": 1
        });
        let mut unknown = prune_unknown(res, &mut d);
        unknown.sort();
        assert_eq!(
            unknown,
            vec![
                "extra",
                "metadata.bogusMeta",
                "spec.foo",
                "spec.template.spec.containers[0].imagePullPolicyy"
            ]
        );
        assert!(d.get("extra").is_none());
        assert_eq!(d.pointer("/metadata/labels/a"), Some(&json!("b")));
        assert_eq!(d.pointer("/spec/replicas"), Some(&json!(1)));
    }

    #[test]
    fn free_form_fields_stay() {
        let res = catalog::lookup("", "v1", "configmaps").unwrap();
        let mut cm = json!({"metadata": {"name": "a", "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {}}}]}, "data": {"k": "v"}});
        assert!(prune_unknown(res, &mut cm).is_empty());
        assert_eq!(
            cm.pointer("/metadata/managedFields/0/fieldsV1/f:data"),
            Some(&json!({}))
        );
    }
}
