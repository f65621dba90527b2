//! DefaultStorageClass admission: a claim created without
//! `storageClassName` gets the default class, the one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"` (the newest when
//! several are, as upstream since 1.26). An empty `storageClassName` is an
//! explicit "no class" and is left alone.

use serde_json::{json, Value};
use skiff_machinery::catalog;

use super::Registry;

const DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";

pub fn admit_claim(reg: &Registry, claim: &mut Value) {
    let named = claim
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null());
    if named {
        return;
    }
    let classes = catalog::lookup("storage.k8s.io", "v1", "storageclasses").expect("catalog");
    let default = reg
        .cache(classes)
        .list(&classes.key_prefix())
        .0
        .iter()
        .map(|e| e.object())
        .filter(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(DEFAULT))
                .and_then(Value::as_str)
                == Some("true")
        })
        .max_by(|a, b| {
            let key = |c: &Value| {
                (
                    c.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    c.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
    if let Some(class) = default {
        let name = class
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), name);
        } else {
            claim["spec"] = json!({"storageClassName": name});
        }
    }
}
