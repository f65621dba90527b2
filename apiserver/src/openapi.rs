//! OpenAPI v3: a root index and one document per group/version, with the
//! component schemas derived from k8s-openapi (names as upstream's, e.g.
//! `io.k8s.api.apps.v1.Deployment`, each kind tagged with
//! `x-kubernetes-group-version-kind`) and, per kind, the operations whose PATCH
//! carries `fieldValidation` — which is how kubectl decides that the server
//! validates fields itself (`--validate=strict`).

use serde_json::{json, Map, Value};
use skiff_machinery::catalog::{self, Resource};
use skiff_machinery::strategic_merge::{self, FieldPatch};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Adds each kind's schema (and what it references) to the generator and
/// maps the kind to its schema name.
macro_rules! kinds {
    ($gen:expr, { $($kind:literal => $ty:path),* $(,)? }) => {{
        let mut roots: HashMap<&'static str, String> = HashMap::new();
        $(
            let _ = $gen.subschema_for::<$ty>();
            roots.insert($kind, <$ty as schemars::JsonSchema>::schema_name().into_owned());
        )*
        roots
    }};
}

/// The schemas of one group/version: definitions by name, and each kind's root name.
pub struct SchemaSet {
    pub defs: Map<String, Value>,
    pub roots: HashMap<&'static str, String>,
}

/// The schemas of a group/version, built once.
pub fn schema_set(group: &str, version: &str) -> std::sync::Arc<SchemaSet> {
    static SETS: OnceLock<std::sync::Mutex<HashMap<String, std::sync::Arc<SchemaSet>>>> =
        OnceLock::new();
    let key = format!("{group}/{version}");
    let sets = SETS.get_or_init(Default::default);
    let mut guard = sets.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .entry(key)
        .or_insert_with(|| {
            let (defs, roots) = schemas(group, version);
            std::sync::Arc::new(SchemaSet { defs, roots })
        })
        .clone()
}

/// Schema definitions of one group/version and the schema name of each kind.
fn schemas(group: &str, version: &str) -> (Map<String, Value>, HashMap<&'static str, String>) {
    use k8s_openapi::api as a;
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    let roots = match (group, version) {
        ("", "v1") => kinds!(gen, {
            "ConfigMap" => a::core::v1::ConfigMap, "Endpoints" => a::core::v1::Endpoints, "Event" => a::core::v1::Event,
            "LimitRange" => a::core::v1::LimitRange, "Namespace" => a::core::v1::Namespace, "Node" => a::core::v1::Node,
            "PersistentVolumeClaim" => a::core::v1::PersistentVolumeClaim, "PersistentVolume" => a::core::v1::PersistentVolume,
            "Pod" => a::core::v1::Pod, "PodTemplate" => a::core::v1::PodTemplate,
            "ReplicationController" => a::core::v1::ReplicationController, "ResourceQuota" => a::core::v1::ResourceQuota,
            "Secret" => a::core::v1::Secret, "ServiceAccount" => a::core::v1::ServiceAccount, "Service" => a::core::v1::Service,
        }),
        ("apps", "v1") => kinds!(gen, {
            "ControllerRevision" => a::apps::v1::ControllerRevision, "DaemonSet" => a::apps::v1::DaemonSet,
            "Deployment" => a::apps::v1::Deployment, "ReplicaSet" => a::apps::v1::ReplicaSet, "StatefulSet" => a::apps::v1::StatefulSet,
        }),
        ("authentication.k8s.io", "v1") => {
            kinds!(gen, { "SelfSubjectReview" => a::authentication::v1::SelfSubjectReview })
        }
        ("authorization.k8s.io", "v1") => kinds!(gen, {
            "LocalSubjectAccessReview" => a::authorization::v1::LocalSubjectAccessReview,
            "SelfSubjectAccessReview" => a::authorization::v1::SelfSubjectAccessReview,
            "SelfSubjectRulesReview" => a::authorization::v1::SelfSubjectRulesReview,
            "SubjectAccessReview" => a::authorization::v1::SubjectAccessReview,
        }),
        ("autoscaling", "v1") => {
            kinds!(gen, { "HorizontalPodAutoscaler" => a::autoscaling::v1::HorizontalPodAutoscaler })
        }
        ("autoscaling", "v2") => {
            kinds!(gen, { "HorizontalPodAutoscaler" => a::autoscaling::v2::HorizontalPodAutoscaler })
        }
        ("batch", "v1") => {
            kinds!(gen, { "CronJob" => a::batch::v1::CronJob, "Job" => a::batch::v1::Job })
        }
        ("coordination.k8s.io", "v1") => {
            kinds!(gen, { "Lease" => a::coordination::v1::Lease })
        }
        ("discovery.k8s.io", "v1") => {
            kinds!(gen, { "EndpointSlice" => a::discovery::v1::EndpointSlice })
        }
        ("events.k8s.io", "v1") => {
            kinds!(gen, { "Event" => a::events::v1::Event })
        }
        ("networking.k8s.io", "v1") => kinds!(gen, {
            "Ingress" => a::networking::v1::Ingress, "NetworkPolicy" => a::networking::v1::NetworkPolicy,
        }),
        ("policy", "v1") => {
            kinds!(gen, { "PodDisruptionBudget" => a::policy::v1::PodDisruptionBudget })
        }
        ("rbac.authorization.k8s.io", "v1") => kinds!(gen, {
            "ClusterRoleBinding" => a::rbac::v1::ClusterRoleBinding, "ClusterRole" => a::rbac::v1::ClusterRole,
            "RoleBinding" => a::rbac::v1::RoleBinding, "Role" => a::rbac::v1::Role,
        }),
        ("scheduling.k8s.io", "v1") => {
            kinds!(gen, { "PriorityClass" => a::scheduling::v1::PriorityClass })
        }
        ("storage.k8s.io", "v1") => {
            kinds!(gen, { "StorageClass" => a::storage::v1::StorageClass })
        }
        _ => HashMap::new(),
    };
    let mut defs = gen.take_definitions(true);
    for (kind, name) in &roots {
        if let Some(Value::Object(s)) = defs.get_mut(name) {
            s.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
        if let Some(ty) = strategic_merge::root_type(kind) {
            annotate_patch_strategy(&mut defs, name, ty, &mut HashSet::new());
        }
    }
    (defs, roots)
}

/// The schema a property points to (`$ref`, `items.$ref`, `allOf[0].$ref`).
fn referenced(prop: &Value) -> Option<String> {
    let r = prop
        .get("$ref")
        .or_else(|| prop.pointer("/items/$ref"))
        .or_else(|| prop.pointer("/allOf/0/$ref"))
        .or_else(|| prop.pointer("/items/allOf/0/$ref"))?;
    r.as_str()?.rsplit('/').next().map(String::from)
}

/// Publishes the merge keys of lists (`x-kubernetes-patch-merge-key`), walking
/// the schemas from a kind's root alongside the strategic-merge metadata.
fn annotate_patch_strategy(
    defs: &mut Map<String, Value>,
    name: &str,
    ty: &'static str,
    seen: &mut HashSet<(String, &'static str)>,
) {
    if !seen.insert((name.to_string(), ty)) {
        return;
    }
    let mut children = Vec::new();
    if let Some(Value::Object(props)) = defs.get_mut(name).and_then(|d| d.get_mut("properties")) {
        for (field, prop) in props.iter_mut() {
            let (child, patch) = strategic_merge::field_patch(ty, field);
            if let Value::Object(p) = prop {
                match patch {
                    FieldPatch::Merge(key) => {
                        p.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
                        if !key.is_empty() {
                            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                        }
                    }
                    FieldPatch::Replace => {
                        p.insert("x-kubernetes-patch-strategy".into(), json!("replace"));
                    }
                    FieldPatch::Default => {}
                }
            }
            if let (Some(child), Some(target)) = (child, referenced(prop)) {
                children.push((target, child));
            }
        }
    }
    for (target, child) in children {
        annotate_patch_strategy(defs, &target, child, seen);
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn operations(res: &Resource, schema_name: &str) -> Map<String, Value> {
    let gvk = json!({"group": res.group, "version": res.version, "kind": res.kind});
    let body_ref = json!({"$ref": format!("#/components/schemas/{schema_name}")});
    let param = |name: &str, description: &str| json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        param("dryRun", "When present, indicates that modifications should not be persisted."),
        param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
    ]);
    let op = |action: &str, with_body: bool| {
        let mut o = json!({
            "tags": [res.group],
            "operationId": format!("{action}{}", res.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": body_ref}}}},
        });
        if with_body {
            o["parameters"] = write_params.clone();
            o["requestBody"] =
                json!({"content": {"application/json": {"schema": body_ref}}, "required": true});
        }
        o
    };
    let base = if res.namespaced {
        format!(
            "/{}/namespaces/{{namespace}}/{}",
            gv_path(res.group, res.version),
            res.plural
        )
    } else {
        format!("/{}/{}", gv_path(res.group, res.version), res.plural)
    };
    let mut paths = Map::new();
    paths.insert(
        base.clone(),
        json!({"get": op("list", false), "post": op("post", true)}),
    );
    let mut patch = op("patch", false);
    patch["parameters"] = write_params.clone();
    patch["requestBody"] = json!({"content": {
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
    }, "required": true});
    paths.insert(
        format!("{base}/{{name}}"),
        json!({"get": op("get", false), "put": op("put", true), "patch": patch, "delete": op("delete", false)}),
    );
    paths
}

/// The document for one group/version, as JSON bytes (built once).
pub fn document(group: &str, version: &str) -> Option<&'static [u8]> {
    static DOCS: OnceLock<std::sync::Mutex<HashMap<String, &'static [u8]>>> = OnceLock::new();
    let key = format!("{group}/{version}");
    let docs = DOCS.get_or_init(Default::default);
    if let Some(d) = docs.lock().ok()?.get(&key) {
        return Some(d);
    }
    let resources: Vec<&Resource> = catalog::in_group_version(group, version).collect();
    if resources.is_empty() {
        return None;
    }
    let set = schema_set(group, version);
    let (defs, roots) = (&set.defs, &set.roots);
    let mut paths = Map::new();
    for res in resources {
        if let Some(name) = roots.get(res.kind) {
            paths.extend(operations(res, name));
        }
    }
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::version::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": defs},
    });
    let bytes: &'static [u8] = Box::leak(serde_json::to_vec(&doc).ok()?.into_boxed_slice());
    docs.lock().ok()?.insert(key, bytes);
    Some(bytes)
}

/// The root index, linking each group/version document.
pub fn root() -> Value {
    let mut paths = Map::new();
    for (group, versions) in catalog::groups() {
        for v in versions {
            let p = gv_path(group, v);
            let hash = format!("{:016X}", fnv(&p));
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// A stable tag for a document's URL (the documents change only with the binary).
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes().chain(crate::version::GIT_VERSION.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
