//! OpenAPI v3: a root index and one document per group/version, with the
//! component schemas derived from k8s-openapi (names as upstream's, e.g.
//! `io.k8s.api.apps.v1.Deployment`, each kind tagged with
//! `x-kubernetes-group-version-kind`) and, per kind, the operations whose PATCH
//! carries `fieldValidation` — which is how kubectl decides that the server
//! validates fields itself (`--validate=strict`).

use crate::registry::Registry;
use serde_json::{json, Map, Value};
use skiff_machinery::catalog::{self, Resource, Served};
use skiff_machinery::strategic_merge::{self, FieldPatch};
use std::borrow::Cow;
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
        ("apiextensions.k8s.io", "v1") => kinds!(gen, {
            "CustomResourceDefinition" => k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        }),
        ("authentication.k8s.io", "v1") => {
            kinds!(gen, {
                "SelfSubjectReview" => a::authentication::v1::SelfSubjectReview,
                "TokenReview" => a::authentication::v1::TokenReview,
            })
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
    // Custom resources take no strategic merge patch (no merge keys), which
    // tells kubectl apply to send a JSON merge patch instead.
    let patch_types: &[&str] = if res.custom.is_some() {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
    } else {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ]
    };
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
    let content: Map<String, Value> = patch_types
        .iter()
        .map(|t| (t.to_string(), json!({"schema": {"type": "object"}})))
        .collect();
    patch["requestBody"] = json!({"content": content, "required": true});
    paths.insert(
        format!("{base}/{{name}}"),
        json!({"get": op("get", false), "put": op("put", true), "patch": patch, "delete": op("delete", false)}),
    );
    paths
}

/// The document for one group/version, as JSON bytes: built once for the
/// built-in groups, at each request for a group of custom resources (their
/// definitions change while the server runs).
pub fn document(reg: &Registry, group: &str, version: &str) -> Option<Cow<'static, [u8]>> {
    let served = reg.served();
    let custom: Vec<&Resource> = served
        .custom()
        .iter()
        .copied()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if !custom.is_empty() {
        return serde_json::to_vec(&custom_document(reg, &custom))
            .ok()
            .map(Cow::Owned);
    }
    builtin_document(group, version).map(Cow::Borrowed)
}

/// A custom resource's schema with its documentation, from its CRD (the
/// served resource keeps none).
fn documented_schema(reg: &Registry, res: &Resource) -> Option<Value> {
    crate::crd::definition_of(reg, res)?
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(res.version))?
        .pointer("/schema/openAPIV3Schema")
        .cloned()
}

fn builtin_document(group: &str, version: &str) -> Option<&'static [u8]> {
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

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Upstream's schema name of a custom kind: the group reversed, then the
/// version and kind (`com.example.stable.v1.CronTab`).
fn custom_schema_name(res: &Resource) -> String {
    let mut parts: Vec<&str> = res.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), res.version, res.kind)
}

/// The document of a group/version of custom resources: each kind's schema
/// from its CRD, with the standard `apiVersion`, `kind` and `metadata`, its
/// list, and the metadata types they reference.
fn custom_document(reg: &Registry, resources: &[&Resource]) -> Value {
    const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
    let core = schema_set("", "v1");
    let mut defs = Map::new();
    for name in [OBJECT_META, LIST_META] {
        copy_with_references(&core.defs, name, &mut defs);
    }
    let mut paths = Map::new();
    for res in resources {
        let Some(custom) = res.custom else { continue };
        let name = custom_schema_name(res);
        let gvk = json!([{"group": res.group, "version": res.version, "kind": res.kind}]);
        let mut schema = match documented_schema(reg, res).unwrap_or_else(|| custom.schema.clone())
        {
            Value::Object(m) => m,
            _ => Map::from_iter([
                ("type".to_string(), json!("object")),
                (
                    "x-kubernetes-preserve-unknown-fields".to_string(),
                    json!(true),
                ),
            ]),
        };
        let props = schema.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(props) = props {
            props.insert(
                "apiVersion".into(),
                json!({"type": "string", "description": API_VERSION_DOC}),
            );
            props.insert(
                "kind".into(),
                json!({"type": "string", "description": KIND_DOC}),
            );
            props.insert("metadata".into(), json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        }
        schema.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
        defs.insert(name.clone(), Value::Object(schema));
        let list_gvk =
            json!([{"group": res.group, "version": res.version, "kind": res.list_kind()}]);
        defs.insert(
            format!("{name}List"),
            json!({
                "description": format!("{}List is a list of {}", res.kind, res.kind),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string", "description": API_VERSION_DOC},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}, "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md", res.plural)},
                    "kind": {"type": "string", "description": KIND_DOC},
                    "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{LIST_META}")}], "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
                },
                "x-kubernetes-group-version-kind": list_gvk,
            }),
        );
        paths.extend(operations(res, &name));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": defs},
    })
}

/// Copies definition `name` and every definition it references.
fn copy_with_references(from: &Map<String, Value>, name: &str, to: &mut Map<String, Value>) {
    let mut pending = vec![name.to_string()];
    while let Some(name) = pending.pop() {
        if to.contains_key(&name) {
            continue;
        }
        let Some(def) = from.get(&name) else { continue };
        collect_refs(def, &mut pending);
        to.insert(name, def.clone());
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.rsplit('/').next() {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// The root index, linking each group/version document. A custom group's
/// link changes with its document, so kubectl's cache of it goes stale
/// when a CRD changes.
pub fn root(served: &Served) -> Value {
    let mut paths = Map::new();
    for (group, versions) in served.groups() {
        for v in versions {
            let p = gv_path(group, v);
            let custom = served
                .custom()
                .iter()
                .any(|r| r.group == group && r.version == v);
            // A changed CRD is a new (never freed) definition: its address
            // tags the document without building it.
            let tag = if custom {
                let addresses: String = served
                    .custom()
                    .iter()
                    .filter(|r| r.group == group && r.version == v)
                    .map(|r| format!("{:p}", *r))
                    .collect();
                fnv(&addresses)
            } else {
                fnv(&p)
            };
            let hash = format!("{tag:016X}");
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
