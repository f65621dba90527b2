//! ServiceAccount admission, as upstream's plugin does it on pod create: a
//! pod runs as `default` unless it names an account, the account must
//! exist, and unless the pod or its account opts out
//! (`automountServiceAccountToken: false`) every container and init
//! container gets the `kube-api-access-*` volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount`: a projected bound token
//! (TokenRequest, `crate::serviceaccount_token`), the cluster CA (ConfigMap
//! `kube-root-ca.crt`, kept by the controllers' root CA publisher) and the
//! namespace. In-cluster clients (kube-rs, client-go, the Python client)
//! read exactly these three files.

use super::Registry;
use crate::error::ApiError;
use crate::meta;
use serde_json::{json, Value};
use skiff_machinery::catalog;

pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
/// Upstream's WarnOnlyBoundTokenExpirationSeconds: a token asked for with
/// this lifetime is one the API server may extend (see
/// `crate::serviceaccount_token`).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Admits a pod being created: names its account and mounts its token.
pub fn admit(reg: &Registry, pod: &mut Value) -> Result<(), ApiError> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some()
    {
        return Ok(());
    }
    let ns = meta::namespace(pod).unwrap_or("default").to_string();
    let name = meta::name(pod).to_string();
    // A spec that is no object is validation's to refuse.
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return Ok(());
    };
    let account = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(account);
    spec["serviceAccount"] = json!(account);
    let sa_res = catalog::lookup("", "v1", "serviceaccounts").expect("catalog");
    let Some(sa) = reg.cache(sa_res).get(&sa_res.key(Some(&ns), &account)) else {
        return Err(ApiError::forbidden(format!(
            "pods \"{name}\" is forbidden: error looking up service account {ns}/{account}: serviceaccount \"{account}\" not found"
        )));
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.object()["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// Mounts the token volume into every container and init container that
/// has nothing at its path yet, adding the volume if one of them needed it
/// (a `kube-api-access-*` volume the pod already has is reused).
fn mount_token(spec: &mut Value) {
    let existing = spec["volumes"].as_array().and_then(|vs| {
        vs.iter()
            .filter_map(|v| v["name"].as_str())
            .find(|n| n.starts_with(VOLUME_PREFIX))
            .map(str::to_string)
    });
    let volume = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", meta::random_suffix()));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            // Mounts that are no list are validation's to refuse.
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if !mounts.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH) {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if needed && existing.is_none() {
        let source = token_volume(&volume);
        match spec.get_mut("volumes") {
            Some(Value::Array(vs)) => vs.push(source),
            None | Some(Value::Null) => spec["volumes"] = json!([source]),
            // Volumes that are no list are validation's to refuse.
            Some(_) => {}
        }
    }
}

/// Upstream's TokenVolumeSource: token, CA and namespace, mode 0644.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                ]}},
            ],
            "defaultMode": 420,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(c: &Value) -> Vec<&str> {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn every_container_gets_the_token_volume_once() {
        let mut spec = json!({
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [
                {"name": "a", "image": "x", "volumeMounts": [{"name": "d", "mountPath": "/d"}]},
                {"name": "b", "image": "x"},
            ],
            "volumes": [{"name": "d", "emptyDir": {}}],
        });
        mount_token(&mut spec);
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        let name = volumes[1]["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        let sources = &volumes[1]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(volumes[1]["projected"]["defaultMode"], 420);
        assert_eq!(mounts(&spec["initContainers"][0]), [TOKEN_MOUNT_PATH]);
        assert_eq!(mounts(&spec["containers"][0]), ["/d", TOKEN_MOUNT_PATH]);
        let b = &spec["containers"][1]["volumeMounts"][0];
        assert_eq!(b["name"], name);
        assert_eq!(b["readOnly"], true);
    }

    #[test]
    fn a_path_already_mounted_or_a_volume_already_there_is_kept() {
        let mut spec = json!({
            "containers": [
                {"name": "a", "image": "x", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "own", "secret": {"secretName": "s"}}],
        });
        let before = spec.clone();
        mount_token(&mut spec);
        assert_eq!(spec, before, "nothing to mount, no volume added");

        let mut spec = json!({
            "containers": [{"name": "a", "image": "x"}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
        });
        mount_token(&mut spec);
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
    }
}
