use super::schema::Ty;
use super::typed;
use super::*;
use serde_json::{json, Value};

const T1: &str = "2026-01-01T00:00:01Z";
const T2: &str = "2026-01-01T00:00:02Z";
const T3: &str = "2026-01-01T00:00:03Z";

fn deployments() -> Scope<'static> {
    Scope {
        kind: "Deployment",
        api_version: "apps/v1",
        subresource: "",
        keep: Keep::AllBut("status"),
        schema: None,
    }
}

fn deployment(replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

/// The managedFields entry of `manager` (with its operation).
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn field_path(s: &str) -> Path {
    s.split('.').map(|f| PathElement::Field(f.into())).collect()
}

fn owns(obj: &Value, manager: &str, operation: &str, path: &str) -> bool {
    let e = entry(obj, manager, operation).expect("entry");
    set_from_fields_v1(&e["fieldsV1"])
        .unwrap()
        .has(&field_path(path))
}

/// Created by an update (as `kubectl create` does), then stored with a uid.
fn created(obj: Value, manager: &str) -> Value {
    let mut obj = obj;
    update(&deployments(), None, &mut obj, manager, T1).unwrap();
    obj["metadata"]["uid"] = json!("u1");
    obj
}

#[test]
fn fields_v1_text_is_upstreams_and_round_trips() {
    // As upstream writes it: "." first, fields, then keys in value order (9 before 10).
    let text = r#"{"f:metadata":{"f:finalizers":{".":{},"v:\"a\"":{}}},"f:spec":{"f:ports":{"k:{\"port\":9,\"protocol\":\"TCP\"}":{".":{},"f:port":{}},"k:{\"port\":10,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}},"f:replicas":{}}}"#;
    let set = set_from_fields_v1(&serde_json::from_str(text).unwrap()).unwrap();
    assert_eq!(set_to_fields_v1(&set).to_string(), text);
    assert!(set.has(&field_path("spec.replicas")));
    assert!(!set.has(&field_path("spec")));
    let port9 = PathElement::key(vec![
        ("protocol".into(), json!("TCP")),
        ("port".into(), json!(9)),
    ]);
    assert!(set.has(&[
        PathElement::Field("spec".into()),
        PathElement::Field("ports".into()),
        port9.clone()
    ]));
    assert_eq!(
        path_string(&[
            PathElement::Field("spec".into()),
            PathElement::Field("ports".into()),
            port9
        ]),
        r#".spec.ports[port=9,protocol="TCP"]"#
    );
    // Unknown element kinds are dropped, anything not a trie is refused.
    let odd = set_from_fields_v1(&json!({"f:a": {}, "x:b": {}})).unwrap();
    assert_eq!(set_to_fields_v1(&odd), json!({"f:a": {}}));
    assert!(set_from_fields_v1(&json!({"f:a": 1})).is_err());
    assert!(set_from_fields_v1(&json!({"k:[1]": {}})).is_err());
}

#[test]
fn set_operations() {
    let a = Set::of(&[
        field_path("spec.replicas"),
        field_path("spec.paused"),
        field_path("spec"),
    ]);
    let b = Set::of(&[field_path("spec.paused"), field_path("metadata.name")]);
    assert_eq!(a.union(&b).paths().len(), 4);
    assert_eq!(a.intersection(&b).paths(), vec![field_path("spec.paused")]);
    // A parent removes itself only; recursively it removes what is below it too.
    let spec = Set::of(&[field_path("spec")]);
    assert_eq!(
        a.difference(&spec).paths(),
        vec![field_path("spec.paused"), field_path("spec.replicas")]
    );
    assert!(a.recursive_difference(&spec).is_empty());
}

#[test]
fn applied_set_uses_keys_defaults_and_atomic_selectors() {
    let set = typed::field_set(
        &deployment(2, json!({"app": "web"})),
        Ty::root("Deployment"),
    )
    .unwrap();
    assert_eq!(
        set_to_fields_v1(&strip(&set)).to_string(),
        concat!(
            r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"#,
            r#""f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"#,
            r#""f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
        )
    );
    // Without a schema every map key is owned as itself, and lists whole.
    let widget = json!({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1, "tags": ["a"]}});
    let set = strip(&typed::field_set(&widget, Ty::root("Widget")).unwrap());
    assert_eq!(
        set_to_fields_v1(&set),
        json!({"f:spec": {".": {}, "f:size": {}, "f:tags": {}}})
    );
}

#[test]
fn update_on_create_owns_what_it_set_with_upstreams_dots() {
    let mut obj = deployment(2, json!({"app": "web"}));
    obj["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}});
    obj["status"] = json!({"replicas": 0});
    update(&deployments(), None, &mut obj, "kubectl-create", T1).unwrap();
    let e = entry(&obj, "kubectl-create", "Update").unwrap();
    assert_eq!(
        (e["apiVersion"].as_str(), e["time"].as_str()),
        (Some("apps/v1"), Some(T1))
    );
    let f = &e["fieldsV1"];
    // New maps and items are owned as themselves; the structs every object has are not.
    assert_eq!(f["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
    assert!(f["f:spec"].get(".").is_none() && f["f:spec"]["f:strategy"].get(".").is_none());
    assert_eq!(
        f["f:spec"]["f:strategy"]["f:rollingUpdate"],
        json!({".": {}, "f:maxSurge": {}})
    );
    let containers = &f["f:spec"]["f:template"]["f:spec"]["f:containers"];
    assert!(containers.get(".").is_none());
    assert!(containers[r#"k:{"name":"nginx"}"#].get(".").is_some());
    // Status (reset on this write) and identity are nobody's.
    assert!(f.get("f:status").is_none() && f["f:metadata"].get("f:name").is_none());
}

#[test]
fn update_moves_changed_fields_and_drops_emptied_entries() {
    let live = created(deployment(2, json!({"app": "web"})), "kubectl-create");
    // `kubectl scale` takes spec.replicas.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    update(
        &deployments(),
        Some(&live),
        &mut scaled,
        "kubectl-scale",
        T2,
    )
    .unwrap();
    assert!(owns(&scaled, "kubectl-scale", "Update", "spec.replicas"));
    assert!(!owns(&scaled, "kubectl-create", "Update", "spec.replicas"));
    assert!(owns(
        &scaled,
        "kubectl-create",
        "Update",
        "metadata.labels.app"
    ));
    // The same write again changes nothing, so the entry keeps its time.
    let mut again = scaled.clone();
    update(
        &deployments(),
        Some(&scaled),
        &mut again,
        "kubectl-scale",
        T3,
    )
    .unwrap();
    assert_eq!(again, scaled);
    // A second scale owns it now; the first's entry, left empty, goes.
    let mut rescaled = scaled.clone();
    rescaled["spec"]["replicas"] = json!(6);
    update(&deployments(), Some(&scaled), &mut rescaled, "hpa", T3).unwrap();
    assert!(entry(&rescaled, "kubectl-scale", "Update").is_none());
    assert!(owns(&rescaled, "hpa", "Update", "spec.replicas"));
    // A status write owns status only, in an entry of its own.
    let status = Scope {
        subresource: "status",
        keep: Keep::Only("status"),
        ..deployments()
    };
    let mut with_status = rescaled.clone();
    with_status["status"] = json!({"replicas": 6});
    update(&status, Some(&rescaled), &mut with_status, "controller", T3).unwrap();
    let e = entry(&with_status, "controller", "Update").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {".": {}, "f:replicas": {}}})
    );
}

#[test]
fn update_honours_given_and_reset_managed_fields() {
    let live = created(deployment(2, json!({"app": "web"})), "kubectl-create");
    // managedFields: [] resets; an object without entries is then not tracked.
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([]);
    update(&deployments(), Some(&live), &mut reset, "x", T2).unwrap();
    assert!(reset.pointer("/metadata/managedFields").is_none());
    let mut next = reset.clone();
    next["spec"]["replicas"] = json!(3);
    update(&deployments(), Some(&reset), &mut next, "x", T2).unwrap();
    assert!(next.pointer("/metadata/managedFields").is_none());
    // Garbage in the request falls back to the stored entries.
    let mut garbage = live.clone();
    garbage["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Nope"}]);
    update(&deployments(), Some(&live), &mut garbage, "x", T2).unwrap();
    assert!(entry(&garbage, "kubectl-create", "Update").is_some());
}

#[test]
fn apply_creates_and_owns_exactly_the_applied_fields() {
    let config = deployment(2, json!({"app": "web"}));
    let obj = apply(&deployments(), &json!({}), &config, "mgr", false, T1).unwrap();
    assert_eq!(obj["spec"], config["spec"]);
    let mf = obj["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0]["manager"], "mgr");
    assert_eq!(mf[0]["operation"], "Apply");
    assert_eq!(mf[0]["time"], T1);
    assert_eq!(mf[0]["fieldsV1"]["f:spec"]["f:selector"], json!({}));
    // The same configuration again is a no-op: not even the time moves.
    let again = apply(&deployments(), &obj, &config, "mgr", false, T2).unwrap();
    assert_eq!(again, obj);
}

#[test]
fn apply_conflicts_with_other_owners_unless_values_agree_or_forced() {
    let live = created(
        deployment(2, json!({"app": "web"})),
        "kubectl-client-side-apply",
    );
    let err = apply(
        &deployments(),
        &live,
        &deployment(3, json!({"app": "web"})),
        "mgr",
        false,
        T2,
    )
    .unwrap_err();
    let ApplyError::Conflicts { message, conflicts } = err else {
        panic!("expected conflicts, got {err:?}");
    };
    assert_eq!(
        message,
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    assert_eq!(conflicts[0].field(), ".spec.replicas");
    assert_eq!(
        conflicts[0].manager,
        r#""kubectl-client-side-apply" using apps/v1"#
    );

    // Applying the value already there shares the field.
    let shared = apply(
        &deployments(),
        &live,
        &deployment(2, json!({"app": "web"})),
        "mgr",
        false,
        T2,
    )
    .unwrap();
    assert!(owns(&shared, "mgr", "Apply", "spec.replicas"));
    assert!(owns(
        &shared,
        "kubectl-client-side-apply",
        "Update",
        "spec.replicas"
    ));

    // Forced: the field changes hands.
    let forced = apply(
        &deployments(),
        &live,
        &deployment(3, json!({"app": "web"})),
        "mgr",
        true,
        T2,
    )
    .unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(owns(&forced, "mgr", "Apply", "spec.replicas"));
    assert!(!owns(
        &forced,
        "kubectl-client-side-apply",
        "Update",
        "spec.replicas"
    ));
    assert!(owns(
        &forced,
        "kubectl-client-side-apply",
        "Update",
        "spec.selector"
    ));
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let live = created(deployment(2, json!({"app": "web", "tier": "a"})), "creator");
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    update(&deployments(), Some(&live), &mut edited, "editor", T2).unwrap();
    let mut config = deployment(3, json!({"app": "web", "tier": "b"}));
    config["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:3");
    let Err(ApplyError::Conflicts { message, conflicts }) =
        apply(&deployments(), &edited, &config, "mgr", false, T3)
    else {
        panic!("expected conflicts");
    };
    assert_eq!(conflicts.len(), 3);
    assert_eq!(
        message,
        concat!(
            "Apply failed with 3 conflicts: conflicts with \"creator\" using apps/v1:\n",
            "- .metadata.labels.tier\n- .spec.replicas\n",
            "conflicts with \"editor\" using apps/v1:\n",
            "- .spec.template.spec.containers[name=\"nginx\"].image"
        )
    );
}

#[test]
fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
    let mut config = deployment(2, json!({"app": "web", "a": "1", "b": "2"}));
    config["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "busybox"}));
    let first = apply(&deployments(), &json!({}), &config, "mgr", false, T1).unwrap();
    // Someone else takes label b (as `kubectl label --overwrite` would).
    let mut labelled = first.clone();
    labelled["metadata"]["labels"]["b"] = json!("3");
    update(
        &deployments(),
        Some(&first),
        &mut labelled,
        "kubectl-label",
        T2,
    )
    .unwrap();

    // Without label a, label b, the sidecar and replicas.
    let mut smaller = deployment(2, json!({"app": "web"}));
    smaller["spec"].as_object_mut().unwrap().remove("replicas");
    let second = apply(&deployments(), &labelled, &smaller, "mgr", false, T3).unwrap();
    assert_eq!(
        second["metadata"]["labels"],
        json!({"app": "web", "b": "3"})
    );
    assert!(second["spec"].get("replicas").is_none());
    let names: Vec<&Value> = second["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, vec!["nginx"]);
    assert!(!owns(&second, "mgr", "Apply", "spec.replicas"));
    assert_eq!(entry(&second, "mgr", "Apply").unwrap()["time"], T3);

    // An applier that applies nothing any more leaves no entry, and its fields go.
    let bare = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let third = apply(&deployments(), &second, &bare, "mgr", false, T3).unwrap();
    assert!(entry(&third, "mgr", "Apply").is_none());
    assert_eq!(third["metadata"]["labels"], json!({"b": "3"}));
    assert_eq!(third["metadata"]["name"], "web");
    assert!(third.get("spec").is_none());
}

#[test]
fn unapplied_fields_of_objects_nobody_applied_to_stay() {
    // Labels of an object created by an update that the applier never applied stay.
    let live = created(
        deployment(2, json!({"app": "web", "keep": "x"})),
        "kubectl-create",
    );
    let out = apply(
        &deployments(),
        &live,
        &deployment(2, json!({"app": "web"})),
        "mgr",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"]["keep"], "x");
    // Entries missing altogether: what exists is attributed to before-first-apply.
    let mut untracked = live.clone();
    untracked["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let out = apply(
        &deployments(),
        &untracked,
        &deployment(2, json!({"app": "web"})),
        "mgr",
        false,
        T2,
    )
    .unwrap();
    assert!(owns(
        &out,
        "before-first-apply",
        "Update",
        "metadata.labels.keep"
    ));
}

#[test]
fn status_is_not_owned_on_the_main_resource_and_only_owned_on_status() {
    let mut config = deployment(2, json!({"app": "web"}));
    config["status"] = json!({"replicas": 9});
    let obj = apply(&deployments(), &json!({}), &config, "mgr", false, T1).unwrap();
    assert!(obj["metadata"]["managedFields"][0]["fieldsV1"]
        .get("f:status")
        .is_none());
    let status = Scope {
        subresource: "status",
        keep: Keep::Only("status"),
        ..deployments()
    };
    let out = apply(&status, &obj, &config, "ctl", false, T2).unwrap();
    let e = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctl")
        .unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
}

#[test]
fn kubectl_takes_over_what_client_side_apply_left_unchanged() {
    let mut csa = deployment(2, json!({"app": "web"}));
    let last = serde_json::to_string(&csa).unwrap();
    csa["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last});
    let live = created(csa, "kubectl-client-side-apply");
    // Another manager conflicts…
    assert!(matches!(
        apply(
            &deployments(),
            &live,
            &deployment(3, json!({"app": "web"})),
            "other",
            false,
            T2
        ),
        Err(ApplyError::Conflicts { .. })
    ));
    // …kubectl does not, and the annotation follows what it applied.
    let out = apply(
        &deployments(),
        &live,
        &deployment(3, json!({"app": "web"})),
        "kubectl",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    let annotation = out["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(annotation
        .starts_with(r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"labels""#));
    assert!(annotation.ends_with("}\n") && annotation.contains(r#""replicas":3"#));
}

#[test]
fn bad_configurations_are_refused() {
    let bad =
        |config: Value| apply(&deployments(), &json!({}), &config, "mgr", false, T1).unwrap_err();
    let mut rs = deployment(1, json!({}));
    rs["kind"] = json!("ReplicaSet");
    assert_eq!(
        bad(rs),
        ApplyError::BadRequest("invalid object type: apps/v1, Kind=ReplicaSet".into())
    );
    let mut with_mf = deployment(1, json!({}));
    with_mf["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        bad(with_mf),
        ApplyError::BadRequest("metadata.managedFields must be nil".into())
    );
    let mut dup = deployment(1, json!({}));
    dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    assert_eq!(
        bad(dup),
        ApplyError::BadRequest(
            r#"failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name="a"]"#.into()
        )
    );
    let mut keyless = deployment(1, json!({}));
    keyless["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    assert!(
        matches!(bad(keyless), ApplyError::BadRequest(m) if m.contains(r#"omits key field "name""#))
    );
}

#[test]
fn merged_lists_keep_upstreams_order() {
    let ty = Ty::root("Pod");
    let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
    let config = json!({"spec": {"containers": [{"name": "c", "image": "i"}, {"name": "a"}]}});
    let merged = typed::merge(&live, &config, ty).unwrap();
    assert_eq!(
        merged["spec"]["containers"],
        json!([{"name": "b"}, {"name": "c", "image": "i"}, {"name": "a"}])
    );
    // Atomic lists are replaced, sets merged by value.
    let live = json!({"metadata": {"finalizers": ["x"]}, "spec": {"tolerations": [{"key": "k"}]}});
    let config =
        json!({"metadata": {"finalizers": ["y"]}, "spec": {"tolerations": [{"key": "j"}]}});
    let merged = typed::merge(&live, &config, ty).unwrap();
    assert_eq!(merged["metadata"]["finalizers"], json!(["x", "y"]));
    assert_eq!(merged["spec"]["tolerations"], json!([{"key": "j"}]));
}

#[test]
fn update_entries_are_capped_into_ancient_changes() {
    let mut obj = created(deployment(0, json!({"app": "web"})), "creator");
    for i in 1..=12 {
        let mut next = obj.clone();
        next["metadata"]["labels"][format!("l{i}")] = json!("x");
        update(
            &deployments(),
            Some(&obj),
            &mut next,
            &format!("m{i:02}"),
            &format!("2026-01-01T00:00:{i:02}Z"),
        )
        .unwrap();
        obj = next;
    }
    let mf = obj["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 10);
    let ancient = entry(&obj, "ancient-changes", "Update").expect("bucket");
    // The four oldest (creator, m01 to m03) are in it, with the newest of their times.
    assert_eq!(ancient["time"], "2026-01-01T00:00:03Z");
    assert!(owns(
        &obj,
        "ancient-changes",
        "Update",
        "metadata.labels.l3"
    ));
    assert!(entry(&obj, "m03", "Update").is_none() && entry(&obj, "m04", "Update").is_some());
    assert!(owns(&obj, "ancient-changes", "Update", "spec.replicas"));
}

/// A custom resource's list that its schema makes a map (by `name`): two
/// managers applying one item each own and keep their own, as upstream
/// (without the schema the list would be atomic, the second apply taking
/// it whole).
#[test]
fn custom_resource_lists_follow_their_schema() {
    let schema: &'static Value = Box::leak(Box::new(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "listeners": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "port": {"type": "integer"}}},
            },
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        }}},
    })));
    let scope = Scope {
        kind: "Gateway",
        api_version: "example.com/v1",
        subresource: "",
        keep: Keep::All,
        schema: Some(schema),
    };
    let gateway = |listener: Value, tag: &str| {
        json!({"apiVersion": "example.com/v1", "kind": "Gateway", "metadata": {"name": "gw"},
               "spec": {"listeners": [listener], "tags": [tag]}})
    };
    let first = gateway(json!({"name": "http", "port": 80}), "a");
    let live = apply(&scope, &json!({}), &first, "one", false, T1).unwrap();
    let second = gateway(json!({"name": "https", "port": 443}), "b");
    let both = apply(&scope, &live, &second, "two", false, T2).unwrap();
    let names: Vec<&str> = both["spec"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "https"]);
    assert_eq!(both["spec"]["tags"], json!(["a", "b"]));
    let e = entry(&both, "two", "Apply").unwrap();
    assert_eq!(
        e["fieldsV1"]["f:spec"]["f:listeners"],
        json!({"k:{\"name\":\"https\"}": {".": {}, "f:name": {}, "f:port": {}}})
    );
}
