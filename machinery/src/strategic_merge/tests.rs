use serde_json::{json, Value};

use super::merge::merge_map;
use super::schema::{Row, Schema, Strategy::*};
use super::{apply, PatchError};

fn patched(kind: &str, original: Value, patch: Value) -> Value {
    let out = apply(kind, &original, &patch).unwrap();
    assert_no_directives(&out);
    out
}

fn assert_no_directives(v: &Value) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| {
            assert!(!k.starts_with('$'), "directive {k} left in output");
            assert_no_directives(v);
        }),
        Value::Array(l) => l.iter().for_each(assert_no_directives),
        _ => {}
    }
}

fn error(kind: &str, original: Value, patch: Value) -> String {
    match apply(kind, &original, &patch) {
        Err(PatchError::Invalid(msg)) => msg,
        Ok(v) => panic!("expected an error, got {v}"),
    }
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}"}
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        },
        "status": {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}]}
    })
}

fn nginx_and_side() -> Value {
    json!([
        {
            "name": "nginx",
            "image": "nginx:1.25",
            "args": ["a"],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}]
        },
        {"name": "side", "image": "busybox"}
    ])
}

fn containers(obj: &Value) -> &Value {
    &obj["spec"]["template"]["spec"]["containers"]
}

#[test]
fn kubectl_apply_changed_deployment() {
    let patch: Value = serde_json::from_str(
        r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"},"labels":null},
 "spec":{"replicas":null,"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],
  "containers":[{"$setElementOrder/env":[{"name":"B"}],"$setElementOrder/ports":[{"containerPort":443}],"args":["b"],
    "env":[{"$patch":"delete","name":"A"}],"name":"nginx","ports":[{"$patch":"delete","containerPort":80}]},
   {"$patch":"delete","name":"side"}]}}}}"#,
    )
    .unwrap();
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    let mut expected = deployment(json!([{
        "name": "nginx",
        "image": "nginx:1.25",
        "args": ["b"],
        "env": [{"name": "B", "value": "2"}],
        "ports": [{"containerPort": 443, "protocol": "TCP"}]
    }]));
    let meta = expected["metadata"].as_object_mut().unwrap();
    meta.shift_remove("labels");
    meta["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    expected["spec"]
        .as_object_mut()
        .unwrap()
        .shift_remove("replicas");
    assert_eq!(out, expected);
    // Untouched keys keep their place.
    let keys: Vec<&String> = out["spec"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["selector", "strategy", "template"]);
}

#[test]
fn adding_a_container_keeps_the_others() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "side"}, {"name": "log"}],
        "containers": [{"name": "log", "image": "fluentbit", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}]}]
    }}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    let mut expected = nginx_and_side();
    expected
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "log", "image": "fluentbit", "env": [{"name": "X", "value": "1"}]}));
    assert_eq!(containers(&out), &expected);

    // Without an order list upstream puts elements the original lacks before
    // the server-only ones (mergeSortedSlice); kubectl apply always sends one.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "log", "image": "fluentbit"}]}}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    let names: Vec<&str> = containers(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["log", "nginx", "side"]);
}

#[test]
fn env_merge_keeps_unlisted_vars() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "env": [{"name": "B", "value": "changed"}, {"name": "C", "value": "3"}]}
    ]}}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert_eq!(
        containers(&out)[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "changed"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(containers(&out)[0]["ports"], nginx_and_side()[0]["ports"]);
    assert_eq!(containers(&out)[1], nginx_and_side()[1]);
}

#[test]
fn an_element_field_set_to_null_is_removed() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "env": [{"name": "A", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
    ]}}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert_eq!(
        containers(&out)[0]["env"][0],
        json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    );
}

#[test]
fn labels_merge_and_null_deletes() {
    let original = json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"k": "v", "gone": "x"}});
    let patch = json!({"metadata": {"labels": {"b": null, "c": "3", "a": "one"}}, "data": {"gone": null, "absent": null}});
    let out = patched("ConfigMap", original, patch);
    assert_eq!(
        out,
        json!({"metadata": {"name": "c", "labels": {"a": "one", "c": "3"}}, "data": {"k": "v"}})
    );
    let labels: Vec<&String> = out["metadata"]["labels"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(labels, ["a", "c"]);
}

#[test]
fn null_patch_and_empty_patch_change_nothing() {
    let original = deployment(nginx_and_side());
    assert_eq!(
        patched("Deployment", original.clone(), Value::Null),
        original
    );
    assert_eq!(patched("Deployment", original.clone(), json!({})), original);
}

#[test]
fn finalizers_merge_as_a_set() {
    let original = json!({"metadata": {"name": "ns", "finalizers": ["a", "b"]}});
    let out = patched(
        "Namespace",
        original.clone(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

    let out = patched(
        "Namespace",
        original.clone(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));

    // What kubectl sends when "a" is dropped and "c" added to the applied list.
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["b", "c"],
        "$deleteFromPrimitiveList/finalizers": ["a"],
        "finalizers": ["c"]
    }});
    let out = patched("Namespace", original.clone(), patch);
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));

    // Like every merge list without an order list: new elements come first.
    let out = patched(
        "Namespace",
        original.clone(),
        json!({"metadata": {"finalizers": ["c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let patch =
        json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c"]}});
    let out = patched("Namespace", original.clone(), patch);
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

    // Deleting from a missing list does not create it.
    let out = patched(
        "Namespace",
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(out, json!({"metadata": {}}));

    // The patch's order wins over the original's for the elements it lists.
    let out = patched(
        "Namespace",
        json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        json!({"metadata": {"finalizers": ["c", "a"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c", "a"]));
}

#[test]
fn service_ports_merge_by_port() {
    let original = json!({"kind": "Service", "spec": {"type": "ClusterIP", "ports": [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "https", "port": 443, "targetPort": 8443}
    ]}});
    let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}, {"name": "metrics", "port": 9090}]}});
    let out = patched("Service", original, patch);
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443, "targetPort": 9443},
            {"name": "metrics", "port": 9090}
        ])
    );
}

#[test]
fn unknown_kind_is_a_json_merge_patch() {
    let original = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "1"}},
        "spec": {"items": [{"name": "x", "v": 1}, {"name": "y"}], "keep": true, "drop": 1}});
    let patch = json!({"metadata": {"labels": {"b": "2"}}, "spec": {"items": [{"name": "x", "v": 2}], "drop": null, "new": {"n": null, "m": 1}}});
    let out = apply("Widget", &original, &patch).unwrap();
    assert_eq!(
        out,
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "1", "b": "2"}},
            "spec": {"items": [{"name": "x", "v": 2}], "keep": true, "new": {"m": 1}}})
    );
    // Containers of an unknown kind are not merged by name either.
    let out = apply(
        "Widget",
        &deployment(nginx_and_side()),
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "log"}]}}}}),
    )
    .unwrap();
    assert_eq!(containers(&out), &json!([{"name": "log"}]));
}

#[test]
fn patch_replace_in_a_list_replaces_it() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x", "env": [{"$patch": "delete", "name": "Q"}]}, {"$patch": "replace"}]}}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert_eq!(
        containers(&out),
        &json!([{"name": "only", "image": "x", "env": []}])
    );

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}]}}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert_eq!(containers(&out), &json!([]));
}

#[test]
fn patch_replace_and_delete_in_a_map() {
    let patch = json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "new": "yes"}}}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"],
        json!({"new": "yes"})
    );

    // Upstream leaves an empty map behind.
    let patch = json!({"spec": {"selector": {"$patch": "delete"}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert_eq!(out["spec"]["selector"], json!({}));

    // A directive map for a field the original lacks adds nothing.
    let patch = json!({"spec": {"paused": {"$patch": "delete"}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert!(out["spec"].get("paused").is_none());
}

#[test]
fn retain_keys_clears_unlisted_fields() {
    // kubectl switching a Deployment to Recreate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
    let out = patched("Deployment", deployment(nginx_and_side()), patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

    // A volume changing its source.
    let pod = json!({"spec": {"containers": [{"name": "c"}], "volumes": [
        {"name": "data", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "a"}}
    ]}});
    let patch = json!({"spec": {"volumes": [{"$retainKeys": ["hostPath", "name"], "name": "data", "hostPath": {"path": "/d"}}]}});
    let out = patched("Pod", pod, patch);
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "data", "hostPath": {"path": "/d"}}, {"name": "cfg", "configMap": {"name": "a"}}])
    );

    let msg = error(
        "Deployment",
        deployment(nginx_and_side()),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
    );
    assert!(msg.contains("retainKeys"), "{msg}");
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}], "podCIDRs": ["10.0.0.0/24"]}});
    let patch = json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}], "podCIDRs": ["fd00::/64"]}});
    let out = patched("Node", node, patch);
    assert_eq!(
        out["spec"]["taints"],
        json!([{"key": "b", "effect": "NoExecute"}])
    );
    // podCIDRs carries the merge strategy.
    assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64", "10.0.0.0/24"]));

    let pod = json!({"spec": {"containers": [{"name": "c", "command": ["sh"]}], "tolerations": [{"key": "a"}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "command": ["bash", "-c"]}]}});
    let out = patched("Pod", pod, patch);
    assert_eq!(
        out["spec"],
        json!({"containers": [{"name": "c", "command": ["bash", "-c"]}], "tolerations": [{"key": "b"}]})
    );
}

#[test]
fn status_conditions_and_addresses_merge_by_type() {
    let node = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]
    }});
    let patch = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]
    }});
    let out = patched("Node", node, patch);
    assert_eq!(
        out["status"],
        json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}, {"type": "DiskPressure", "status": "False"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}]
        })
    );

    let dep = deployment(nginx_and_side());
    let patch = json!({"status": {"conditions": [{"type": "Progressing", "status": "True"}]}});
    let out = patched("Deployment", dep, patch);
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Progressing", "status": "True"}, {"type": "Available", "status": "True"}])
    );
}

#[test]
fn pod_lists_merge_by_their_keys() {
    let pod = json!({"spec": {
        "initContainers": [{"name": "init", "volumeMounts": [{"mountPath": "/a", "name": "v"}]}],
        "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/a", "name": "v"}], "ports": [{"containerPort": 80}]}],
        "imagePullSecrets": [{"name": "reg"}],
        "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["one"]}]
    }, "status": {"podIPs": [{"ip": "10.0.0.1"}]}});
    let patch = json!({"spec": {
        "initContainers": [{"name": "init", "volumeMounts": [{"mountPath": "/b", "name": "w"}],
            "$setElementOrder/volumeMounts": [{"mountPath": "/a"}, {"mountPath": "/b"}]}],
        // 80.0 is the same port to Go, which decodes every number as a float.
        "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/a", "readOnly": true}], "ports": [{"containerPort": 80.0, "name": "http"}]}],
        "imagePullSecrets": [{"name": "other"}],
        "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["uno"]}]
    }, "status": {"podIPs": [{"ip": "fd00::1"}], "$setElementOrder/podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}});
    let out = patched("Pod", pod, patch);
    assert_eq!(
        out,
        json!({"spec": {
            "initContainers": [{"name": "init", "volumeMounts": [{"mountPath": "/a", "name": "v"}, {"mountPath": "/b", "name": "w"}]}],
            "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/a", "name": "v", "readOnly": true}], "ports": [{"containerPort": 80.0, "name": "http"}]}],
            "imagePullSecrets": [{"name": "other"}, {"name": "reg"}],
            "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["uno"]}]
        }, "status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}})
    );
}

#[test]
fn cronjob_containers_are_under_the_job_template() {
    let cj = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]
    }}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}}}});
    let out = patched("CronJob", cj, patch);
    assert_eq!(
        out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
    );
}

#[test]
fn other_workloads_and_templates_are_typed() {
    let template = json!({"spec": {"containers": [{"name": "a", "image": "1"}]}});
    let patch_template = json!({"spec": {"containers": [{"name": "b", "image": "2"}]}});
    let want = json!([{"name": "b", "image": "2"}, {"name": "a", "image": "1"}]);
    for kind in [
        "ReplicaSet",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "ReplicationController",
    ] {
        let out = patched(
            kind,
            json!({"spec": {"template": template}}),
            json!({"spec": {"template": patch_template}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"], want,
            "{kind}"
        );
    }
    let out = patched(
        "PodTemplate",
        json!({"template": template}),
        json!({"template": patch_template}),
    );
    assert_eq!(out["template"]["spec"]["containers"], want);
}

#[test]
fn owner_references_merge_by_uid() {
    let original =
        json!({"metadata": {"ownerReferences": [{"uid": "1", "kind": "ReplicaSet", "name": "a"}]}});
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "2", "kind": "ReplicaSet", "name": "b"}, {"uid": "1", "controller": true}]}});
    let out = patched("Pod", original, patch);
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "2", "kind": "ReplicaSet", "name": "b"}, {"uid": "1", "kind": "ReplicaSet", "name": "a", "controller": true}])
    );
}

#[test]
fn service_account_secrets_and_pdb_selector() {
    let sa = json!({"secrets": [{"name": "a"}]});
    let out = patched("ServiceAccount", sa, json!({"secrets": [{"name": "b"}]}));
    assert_eq!(out["secrets"], json!([{"name": "b"}, {"name": "a"}]));

    // patchStrategy "replace": the selector is not merged.
    let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
    let out = patched(
        "PodDisruptionBudget",
        pdb,
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
    );
    assert_eq!(
        out["spec"],
        json!({"selector": {"matchLabels": {"b": "2"}}, "minAvailable": 1})
    );
}

#[test]
fn directives_in_new_values_are_dropped() {
    let patch = json!({"spec": {"template": {"spec": {
        "volumes": [{"name": "v", "emptyDir": {}}, {"name": "gone", "$patch": "delete"}],
        "containers": [{"name": "new", "$setElementOrder/env": [{"name": "E"}], "env": [{"name": "E"}], "$retainKeys": ["name", "env"]}]
    }}}});
    let out = patched("Deployment", deployment(json!([])), patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "v", "emptyDir": {}}])
    );
    assert_eq!(
        containers(&out),
        &json!([{"name": "new", "env": [{"name": "E"}]}])
    );
}

#[test]
fn invalid_patches_are_errors() {
    let dep = deployment(nginx_and_side());
    let msg = error(
        "Deployment",
        dep.clone(),
        json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
    );
    assert!(
        msg.contains("does not contain declared merge key: name"),
        "{msg}"
    );

    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "side"}],
        "containers": [{"name": "side"}, {"name": "nginx"}]
    }}}});
    let msg = error("Deployment", dep.clone(), patch);
    assert!(msg.contains("doesn't match"), "{msg}");

    let msg = error(
        "Deployment",
        dep.clone(),
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}}),
    );
    assert!(
        msg.contains("merging lists cannot yet be specified"),
        "{msg}"
    );

    let msg = error(
        "Deployment",
        dep.clone(),
        json!({"spec": {"$patch": "explode"}}),
    );
    assert!(msg.contains("unknown patch type"), "{msg}");

    let msg = error(
        "Deployment",
        dep.clone(),
        json!({"spec": {"template": {"spec": {"containers": [["nested"]]}}}}),
    );
    assert!(msg.contains("lists of lists"), "{msg}");

    let msg = error(
        "Deployment",
        dep.clone(),
        json!({"spec": {"$setElementOrder/containers": {"name": "x"}}}),
    );
    assert!(msg.contains("setElementOrder"), "{msg}");

    error("Deployment", dep.clone(), json!(["not", "an", "object"]));
    error("Widget", dep, json!("nope"));
}

/// The `mergeItem` type of upstream's own tests.
#[rustfmt::skip]
const MERGE_ITEM: Schema = Schema { rows: &[
    ("mergeItem", "mergingList", "mergeItem", Merge("name")),
    ("mergeItem", "nonMergingList", "mergeItem", Default),
    ("mergeItem", "mergingIntList", "", Merge("")),
    ("mergeItem", "mergeItemPtr", "mergeItem", Merge("name")),
    ("mergeItem", "replacingItem", "", Replace),
    ("mergeItem", "retainKeysMap", "retainKeysMergeItem", Default),
    ("mergeItem", "retainKeysMergingList", "mergeItem", Merge("name")),
    ("retainKeysMergeItem", "mergingIntList", "", Merge("")),
    ("retainKeysMergeItem", "mergingList", "mergeItem", Merge("name")),
] as &[Row] };

fn merge_item(original: Value, patch: Value) -> Result<Value, PatchError> {
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        panic!("maps")
    };
    merge_map(&MERGE_ITEM, o, p, Some("mergeItem")).map(Value::Object)
}

/// Ordering cases after upstream's patch_test.go.
#[test]
fn upstream_ordering() {
    let list = |names: &[i64]| Value::Array(names.iter().map(|n| json!({"name": n})).collect());
    let cases = [
        // The patch's order wins; a server-only element stays in front of what followed it.
        (
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
            json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
        ),
        (
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1]}),
            json!({"mergingIntList": [2, 3, 1]}),
        ),
        // An order list may name elements that exist nowhere.
        (
            json!({"mergingList": list(&[1, 3])}),
            json!({"$setElementOrder/mergingList": list(&[3, 2, 1]), "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
        ),
        (
            json!({"mergingIntList": [1, 3]}),
            json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
            json!({"mergingIntList": [3, 1]}),
        ),
        // Reordering a list the patch does not otherwise touch.
        (
            json!({"mergingList": [{"name": "a"}, {"name": "b"}], "mergeItemPtr": [{"name": "c"}, {"name": "d"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "b"}], "$setElementOrder/mergeItemPtr": [{"name": "d"}, {"name": "c"}],
                   "mergingList": [{"$patch": "delete", "name": "a"}]}),
            json!({"mergingList": [{"name": "b"}], "mergeItemPtr": [{"name": "d"}, {"name": "c"}]}),
        ),
        // Deleting and adding at once: the server-only 4 lands where upstream puts it.
        (
            json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}, {"name": 4, "other": "c"}]}),
            json!({"$setElementOrder/mergingList": list(&[2, 3]), "mergingList": [{"name": 3}, {"name": 1, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 2, "other": "b"}, {"name": 4, "other": "c"}, {"name": 3}]}),
        ),
        (
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 4, "other": "c"}]}),
            json!({"$setElementOrder/mergingList": list(&[2, 3]), "mergingList": [{"name": 2}, {"name": 3}, {"name": 1, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 4, "other": "c"}, {"name": 2}, {"name": 3}]}),
        ),
        // Every duplicate of a deleted key goes.
        (
            json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]}),
            json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 2, "value": "a"}]}),
        ),
        // Merging into nested merge lists, with their own order lists.
        (
            json!({"mergeItemPtr": [{"name": 1, "mergeItemPtr": [{"name": 1}, {"name": 2, "value": 2}]}, {"name": 2}]}),
            json!({"$setElementOrder/mergeItemPtr": list(&[1, 2]), "mergeItemPtr": [
                {"$setElementOrder/mergeItemPtr": list(&[1, 2]), "name": 1, "mergeItemPtr": [{"name": 1, "value": 1}]}]}),
            json!({"mergeItemPtr": [{"name": 1, "mergeItemPtr": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]}, {"name": 2}]}),
        ),
        // A primitive deletion list works whatever the list's strategy.
        (
            json!({"nonMergingIntList": [1, 2, 3]}),
            json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
            json!({"nonMergingIntList": [1, 3]}),
        ),
        // patchStrategy "replace" on a map.
        (
            json!({"replacingItem": {"Some": "Generic", "Yaml": "Inside"}, "name": "x"}),
            json!({"replacingItem": {"Newly": "Modified"}}),
            json!({"replacingItem": {"Newly": "Modified"}, "name": "x"}),
        ),
    ];
    for (original, patch, expected) in cases {
        let got = merge_item(original.clone(), patch.clone()).unwrap();
        assert_eq!(got, expected, "original {original}\npatch {patch}");
    }

    let err = merge_item(
        json!({"mergingIntList": [1, 3, 2]}),
        json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
    );
    assert!(err.unwrap_err().to_string().contains("doesn't match"));
}
