//! What a kind adds to the generic registry (upstream's per-kind strategy):
//! defaults, what create adds after them (admission, allocations, reset
//! status), the spec/status split and generation on update, the scope of
//! field ownership, and graceful deletion periods.

use super::{Part, Registry, WriteOptions};
use crate::crd;
use crate::error::ApiError;
use crate::meta;
use serde_json::{json, Map, Value};
use skiff_machinery::catalog::{Resource, Subresource};
use skiff_machinery::managed_fields::{self, Keep};

/// The body's apiVersion/kind, when given, must be the URL's.
pub fn check_type(res: &Resource, obj: &Value) -> Result<(), ApiError> {
    let expected = res.api_version();
    if let Some(av) = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if av != expected {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected})"
            )));
        }
    }
    if let Some(kind) = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if kind != res.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                res.kind
            )));
        }
    }
    Ok(())
}

/// Kinds whose metadata.generation counts spec changes.
pub fn tracks_generation(res: &Resource) -> bool {
    res.custom.is_some()
        || matches!(
            (res.group, res.plural),
            ("apps", _)
                | ("batch", _)
                | ("policy", "poddisruptionbudgets")
                | ("networking.k8s.io", _)
                | ("autoscaling", _)
                | ("", "replicationcontrollers")
                | ("", "persistentvolumeclaims")
                | ("scheduling.k8s.io", _)
                | ("storage.k8s.io", _)
                | ("apiextensions.k8s.io", _)
        )
}

/// The scope of a write's field ownership: its subresource, and what it may
/// own (upstream's reset fields: status on the main resource of a kind with a
/// status subresource, only status on `/status`).
pub fn with_field_scope<R>(
    res: &Resource,
    part: Part,
    opts: &WriteOptions,
    f: impl FnOnce(&managed_fields::Scope) -> R,
) -> R {
    let (subresource, keep) = match part {
        Part::Status => ("status", Keep::Only("status")),
        Part::Finalize => ("finalize", Keep::Only("spec")),
        Part::EphemeralContainers => ("ephemeralcontainers", Keep::Only("spec")),
        Part::Main if res.has(Subresource::Status) => {
            (opts.subresource.unwrap_or(""), Keep::AllBut("status"))
        }
        Part::Main => (opts.subresource.unwrap_or(""), Keep::All),
    };
    let api_version = res.api_version();
    f(&managed_fields::Scope {
        kind: res.kind,
        api_version: &api_version,
        subresource,
        keep,
        schema: res.custom.map(|c| &c.schema).filter(|s| s.is_object()),
    })
}

/// Records the write as an Update by the request's field manager in `new`'s
/// managedFields (`old` is None on create).
pub fn track_update(
    res: &Resource,
    part: Part,
    opts: &WriteOptions,
    old: Option<&Value>,
    new: &mut Value,
) {
    let old_fields = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .cloned();
    let keep_old = |new: &mut Value| match &old_fields {
        Some(mf) => {
            meta::metadata_mut(new).insert("managedFields".into(), mf.clone());
        }
        None => {
            meta::metadata_mut(new).remove("managedFields");
        }
    };
    // Writes the server makes on its own behalf leave ownership as it was.
    let Some(manager) = opts.field_manager.as_deref() else {
        if old_fields.is_some() {
            keep_old(new);
        }
        return;
    };
    let now = meta::now_rfc3339();
    let tracked = with_field_scope(res, part, opts, |scope| {
        managed_fields::update(scope, old, new, manager, &now)
    });
    if let Err(e) = tracked {
        // As upstream's UpdateNoErrors: the write goes on with the stored entries.
        tracing::warn!(
            resource = res.plural,
            name = meta::name(new),
            "managedFields not updated: {e}"
        );
        keep_old(new);
    }
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// A workload's update strategy: RollingUpdate unless typed otherwise, with
/// the rolling parameters filled in (clients send `strategy: {}` too).
fn default_rolling(spec: &mut Map<String, Value>, field: &str, rolling: Value) {
    let strategy = spec.entry(field).or_insert_with(|| json!({}));
    let Some(s) = strategy.as_object_mut() else {
        return;
    };
    set_default(s, "type", json!("RollingUpdate"));
    if s.get("type").and_then(Value::as_str) != Some("RollingUpdate") {
        return;
    }
    let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
    if let (Some(ru), Value::Object(defaults)) = (ru.as_object_mut(), rolling) {
        for (k, v) in defaults {
            set_default(ru, &k, v);
        }
    }
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("object")
}

/// Upstream's pod spec defaults (SetDefaults_PodSpec, _Container, _ContainerPort).
pub fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    set_default(m, "restartPolicy", json!("Always"));
    set_default(m, "terminationGracePeriodSeconds", json!(30));
    set_default(m, "dnsPolicy", json!("ClusterFirst"));
    set_default(m, "securityContext", json!({}));
    set_default(m, "schedulerName", json!("default-scheduler"));
    set_default(m, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        default_containers(m, list);
    }
}

/// Upstream's container defaults for the containers of `spec[list]`.
fn default_containers(spec: &mut Map<String, Value>, list: &str) {
    let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
        return;
    };
    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag_is_latest(image) {
            "Always"
        } else {
            "IfNotPresent"
        };
        set_default(c, "imagePullPolicy", json!(policy));
        set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
        set_default(c, "terminationMessagePolicy", json!("File"));
        set_default(c, "resources", json!({}));
        if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Upstream's SetDefaults_Pod (pods only, not templates): a container's
/// limit stands in for the request it does not make.
fn default_requests_to_limits(spec: &mut Value) {
    for list in ["initContainers", "containers"] {
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for res in containers
            .into_iter()
            .flatten()
            .filter_map(|c| c.get_mut("resources").and_then(Value::as_object_mut))
        {
            let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let Some(requests) = res
                .entry("requests")
                .or_insert_with(|| json!({}))
                .as_object_mut()
            else {
                continue;
            };
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
            if requests.is_empty() {
                res.remove("requests");
            }
        }
    }
}

/// No tag, or `:latest`, pulls always (a digest never does).
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn default_template(obj: &mut Value, pointer: &str) {
    if let Some(spec) = obj.pointer_mut(pointer) {
        default_pod_spec(spec);
    }
}

/// Upstream's defaulting (the `SetDefaults_*` functions): what an object
/// gets as it is decoded, before field ownership is recorded, so its writer
/// owns the defaults. Also run on the result of an apply.
pub fn apply_defaults(res: &Resource, obj: &mut Value) {
    if res.custom.is_some() {
        return crd::default_object(res, obj);
    }
    match (res.group, res.plural) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            crd::definition::apply_defaults(obj)
        }
        ("", "pods") => {
            obj_mut(obj, "spec");
            default_pod_spec(&mut obj["spec"]);
            default_requests_to_limits(&mut obj["spec"]);
        }
        ("", "namespaces") => {
            let name = meta::name(obj).to_string();
            let labels = meta::metadata_mut(obj)
                .entry("labels")
                .or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        ("", "secrets") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "type", json!("Opaque"));
            }
        }
        ("", "events") => {
            // What Go's encoder writes for the struct fields it never omits:
            // events recorded through events.k8s.io read as upstream's do in
            // core/v1 (`kubectl get events --sort-by=.lastTimestamp` finds
            // the field in every event).
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "firstTimestamp", Value::Null);
                set_default(m, "lastTimestamp", Value::Null);
                set_default(m, "source", json!({}));
            }
        }
        ("", "services") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            let ty = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            if ty != "ExternalName" {
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
                set_default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, "targetPort", port);
                    }
                }
            }
        }
        ("", "persistentvolumeclaims") => {
            set_default(obj_mut(obj, "spec"), "volumeMode", json!("Filesystem"));
        }
        ("", "limitranges") => super::limitranger::default_limit_range(obj),
        ("", "persistentvolumes") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("apps", "deployments") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            default_rolling(
                spec,
                "strategy",
                json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
            );
            default_template(obj, "/spec/template/spec");
        }
        ("apps", "replicasets") => {
            set_default(obj_mut(obj, "spec"), "replicas", json!(1));
            default_template(obj, "/spec/template/spec");
        }
        ("apps", "statefulsets") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            default_rolling(spec, "updateStrategy", json!({"partition": 0}));
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_template(obj, "/spec/template/spec");
        }
        ("apps", "daemonsets") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "revisionHistoryLimit", json!(10));
            default_rolling(
                spec,
                "updateStrategy",
                json!({"maxUnavailable": 1, "maxSurge": 0}),
            );
            default_template(obj, "/spec/template/spec");
        }
        ("batch", "jobs") => {
            default_job(obj);
        }
        ("batch", "cronjobs") => {
            let spec = obj_mut(obj, "spec");
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            default_template(obj, "/spec/jobTemplate/spec/template/spec");
        }
        _ => {}
    }
}

/// What create adds after defaults and field ownership, as upstream's
/// admission and PrepareForCreate do: service accounts and tolerations,
/// allocations, generated selectors, and status reset.
pub async fn prepare_create(
    reg: &Registry,
    res: &Resource,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if res.has(Subresource::Status)
        && (res.custom.is_some()
            || !matches!(
                res.plural,
                "pods"
                    | "namespaces"
                    | "services"
                    | "nodes"
                    | "persistentvolumes"
                    | "persistentvolumeclaims"
            ))
    {
        // Upstream drops status on create for kinds whose controllers own it.
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    if res.custom.is_some() {
        return crd::refuse_create_while_terminating(reg, res);
    }
    match (res.group, res.plural) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            crd::definition::prepare_status(obj, None)
        }
        ("", "pods") => {
            super::serviceaccount::admit(reg, obj)?;
            super::priority::admit(reg, obj)?;
            super::limitranger::admit_pod(reg, obj)?;
            add_default_tolerations(&mut obj["spec"]);
            let status = obj_mut(obj, "status");
            status.clear();
            status.insert("phase".into(), json!("Pending"));
            let qos = qos_class(&obj["spec"]);
            obj["status"]["qosClass"] = json!(qos);
        }
        ("", "namespaces") => {
            obj_mut(obj, "spec").insert("finalizers".into(), json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            reg.services.allocate(reg, obj).await?;
            obj["status"] = json!({"loadBalancer": {}});
        }
        ("", "persistentvolumeclaims") => {
            super::storageclass::admit_claim(reg, obj);
            super::limitranger::admit_claim(reg, obj)?;
            obj["status"] = json!({"phase": "Pending"});
        }
        ("", "persistentvolumes") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("batch", "jobs") => job_selector(obj),
        _ => {}
    }
    Ok(())
}

/// DefaultTolerationSeconds admission: pods tolerate a not-ready or
/// unreachable node for 300 s unless they say otherwise.
fn add_default_tolerations(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    let tolerations = m.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && op == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Job defaults.
fn default_job(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    let both_unset = spec.get("parallelism").is_none_or(Value::is_null)
        && spec.get("completions").is_none_or(Value::is_null);
    if both_unset {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    // With a per-index limit the global one is effectively off (upstream).
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set_default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_template(obj, "/spec/template/spec");
}

/// The generated selector tying a Job's pods to its uid, unless the Job
/// brings its own (upstream's PrepareForCreate).
fn job_selector(obj: &mut Value) {
    let uid = meta::uid(obj).unwrap_or("").to_string();
    let name = meta::name(obj).to_string();
    let spec = obj_mut(obj, "spec");
    let manual = spec
        .get("manualSelector")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if manual {
        return;
    }
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let tmpl_meta = obj
        .pointer_mut("/spec/template")
        .map(|t| obj_mut(t, "metadata"));
    if let Some(tm) = tmpl_meta {
        let labels = tm.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
            l.insert("batch.kubernetes.io/job-name".into(), json!(name));
            l.insert("controller-uid".into(), json!(uid));
            l.insert("job-name".into(), json!(name));
        }
    }
}

/// Upstream's QoS: Guaranteed when every container has equal cpu and memory
/// limits and requests, BestEffort when none has any, else Burstable.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(r));
            let q = req.and_then(|q| q.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Keeps what an update may not change, and splits spec from status.
pub fn prepare_update(res: &Resource, old: &Value, new: &mut Value, part: Part) {
    let namespace = res.group.is_empty() && res.plural == "namespaces";
    if namespace {
        // spec.finalizers changes only through `finalize`, and only it changes there.
        let finalizers = if part == Part::Finalize {
            new.pointer("/spec/finalizers").cloned()
        } else {
            old.pointer("/spec/finalizers").cloned()
        };
        if part == Part::Finalize {
            *new = old.clone();
        }
        match finalizers {
            Some(f) => new["spec"]["finalizers"] = f,
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
    }
    if res.group.is_empty() && res.plural == "pods" {
        keep_ephemeral_containers(old, new, part);
    }
    let has_status = res.has(Subresource::Status);
    if has_status {
        match part {
            // A main-resource write cannot change status…
            Part::Main | Part::Finalize | Part::EphemeralContainers => match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            // …and a status write changes nothing but status.
            Part::Status => {
                let status = new.get("status").cloned();
                let old_meta = old.get("metadata").cloned();
                *new = old.clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if let Some(m) = old_meta {
                    new["metadata"] = m;
                }
            }
        }
    }
    // Immutable metadata comes from the stored object.
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let m = meta::metadata_mut(new);
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(key) {
            Some(v) => {
                m.insert(key.into(), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
    if crd::is_definitions(res) && part == Part::Main {
        crd::definition::prepare_status(new, Some(old));
    }
    // A custom resource's generation counts every change but metadata's.
    let changed = if res.custom.is_some() {
        changed_but_metadata(old, new)
    } else {
        new.get("spec") != old.get("spec")
    };
    if tracks_generation(res) && part == Part::Main && changed {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta::metadata_mut(new).insert("generation".into(), json!(g));
    }
    // Once deleting, finalizers may only be removed, never added.
    if meta::deletion_timestamp(old).is_some() {
        let old_f = meta::finalizers(old);
        let new_f: Vec<String> = meta::finalizers(new)
            .into_iter()
            .filter(|f| old_f.contains(f))
            .collect();
        if new_f.is_empty() {
            meta::metadata_mut(new).remove("finalizers");
        } else {
            meta::metadata_mut(new).insert("finalizers".into(), json!(new_f));
        }
    }
}

/// A pod's spec.ephemeralContainers change only through its
/// `ephemeralcontainers` subresource, and nothing else changes there (as
/// upstream's podEphemeralContainersStrategy); what it adds gets the
/// container defaults.
/// Whether anything but `metadata` differs, comparing in place.
fn changed_but_metadata(old: &Value, new: &Value) -> bool {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let count = |m: &Map<String, Value>| m.len() - usize::from(m.contains_key("metadata"));
    count(o) != count(n)
        || n.iter()
            .any(|(k, v)| k != "metadata" && o.get(k) != Some(v))
}

fn keep_ephemeral_containers(old: &Value, new: &mut Value, part: Part) {
    let (kept, through_subresource) = match part {
        Part::EphemeralContainers => {
            let given = new.pointer("/spec/ephemeralContainers").cloned();
            *new = old.clone();
            (given, true)
        }
        _ => (old.pointer("/spec/ephemeralContainers").cloned(), false),
    };
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match kept {
        Some(list) if list.as_array().is_some_and(|l| !l.is_empty()) => {
            spec.insert("ephemeralContainers".into(), list);
        }
        _ => {
            spec.remove("ephemeralContainers");
        }
    }
    if through_subresource {
        default_containers(spec, "ephemeralContainers");
    }
}

/// Kind-specific update rules that need the registry (Service allocations).
pub async fn prepare_update_kind(
    reg: &Registry,
    res: &Resource,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    if res.group.is_empty() && res.plural == "services" {
        reg.services.keep_on_update(reg, old, new).await?;
    }
    if res.group.is_empty() && res.plural == "pods" {
        // Most of a pod's spec is immutable; nodeName is set through binding.
        if let (Some(o), Some(n)) = (old.get("spec"), new.get_mut("spec")) {
            if let Some(node) = o.get("nodeName") {
                n["nodeName"] = node.clone();
            }
        }
    }
    Ok(())
}

/// Finalizers a kind's deletion waits for besides the object's own: a CRD's
/// cleanup of its custom resources.
pub fn finalizers_on_delete(res: &Resource, finalizers: &mut Vec<String>) {
    if crd::is_definitions(res) && !finalizers.iter().any(|f| f == crd::CLEANUP_FINALIZER) {
        finalizers.push(crd::CLEANUP_FINALIZER.into());
    }
}

/// How an object shows it is being deleted, once deletion waits for
/// something: a namespace's Terminating phase, and (from the request that
/// starts it) a CRD's Terminating condition.
pub fn mark_deleting(res: &Resource, obj: &mut Value, first: bool) {
    if res.group.is_empty() && res.plural == "namespaces" {
        obj["status"]["phase"] = json!("Terminating");
    }
    if crd::is_definitions(res) && first {
        crd::set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }
}

/// A namespace's `spec.finalizers` (the namespace controller's "kubernetes"):
/// like metadata finalizers, they hold a deleting namespace until emptied.
pub fn spec_finalizers(res: &Resource, obj: &Value) -> Vec<String> {
    if !(res.group.is_empty() && res.plural == "namespaces") {
        return Vec::new();
    }
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The grace period a delete gets: pods on a node wait for their kubelet.
pub fn grace_period(res: &Resource, obj: &Value, requested: Option<i64>) -> i64 {
    if !(res.group.is_empty() && res.plural == "pods") {
        return 0;
    }
    let scheduled = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    requested
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

/// Frees what an object held once it is gone (Service IPs and ports).
pub fn release(reg: &Registry, res: &Resource, obj: &Value) {
    if res.group.is_empty() && res.plural == "services" {
        reg.services.release(obj);
    }
}
