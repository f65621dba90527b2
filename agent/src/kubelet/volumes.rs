//! A pod's volumes on this node, under `<pod dir>/volumes/<name>`:
//! emptyDir (a directory, or tmpfs for `medium: Memory`), hostPath (with
//! its type checks), configMap, secret (on tmpfs), downwardAPI and
//! projected (on tmpfs; written atomically and refreshed in place when
//! their sources change), and persistentVolumeClaim bound to a hostPath or local volume.
//! Containers get them as bind mounts, with subPath and subPathExpr.

use super::atomicdir::{self, Payload};
use super::env;
use super::Ctx;
use crate::runtime::bundle::{expand, BindMount};
use crate::runtime::sys;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::Api;
use kube::ResourceExt;
use skiff_machinery::quantity::Quantity;
use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Whether the pod has volumes whose content follows API objects.
pub fn has_refreshable(pod: &Pod) -> bool {
    volumes(pod).iter().any(|v| {
        v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some()
    })
}

/// The disk-backed emptyDirs with a sizeLimit, and the limit in bytes:
/// the ones kubelet's eviction manager watches (tmpfs ones are sized).
pub fn limited_empty_dirs(pod: &Pod) -> Vec<(String, String, u64)> {
    volumes(pod)
        .into_iter()
        .filter_map(|v| {
            let e = v.empty_dir?;
            if e.medium.as_deref() == Some("Memory") {
                return None;
            }
            let limit = e.size_limit?;
            let bytes = Quantity::parse(&limit.0).ok()?.millis / 1000;
            Some((v.name, limit.0, bytes.max(0) as u64))
        })
        .collect()
}

/// The eviction message for the first of `limited` (from
/// `limited_empty_dirs`) whose usage under `pod_dir` is over its limit,
/// worded as kubelet's.
pub fn empty_dir_over_limit(pod_dir: &Path, limited: &[(String, String, u64)]) -> Option<String> {
    limited.iter().find_map(|(name, limit, bytes)| {
        let used = disk_usage(&pod_dir.join("volumes").join(name));
        (used > *bytes)
            .then(|| format!("Usage of EmptyDir volume \"{name}\" exceeds the limit \"{limit}\". "))
    })
}

/// Bytes on disk under `dir` (as `du`: allocated blocks, this filesystem only).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() && m.dev() == top.dev() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn volumes(pod: &Pod) -> Vec<Volume> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
}

/// Sets up (or refreshes) every volume; returns each one's host path. The
/// error is the FailedMount message.
pub async fn setup(
    ctx: &Ctx,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    for v in volumes(pod) {
        let path = setup_one(ctx, pod, pod_dir, &v)
            .await
            .map_err(|e| format!("MountVolume.SetUp failed for volume \"{}\" : {e}", v.name))?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

async fn setup_one(ctx: &Ctx, pod: &Pod, pod_dir: &Path, v: &Volume) -> Result<PathBuf, String> {
    let dir = pod_dir.join("volumes").join(&v.name);
    let ns = pod.namespace().unwrap_or_default();
    if let Some(e) = &v.empty_dir {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if e.medium.as_deref() == Some("Memory") {
            let size = e
                .size_limit
                .as_ref()
                .and_then(|q| Quantity::parse(&q.0).ok())
                .map(|q| q.millis / 1000);
            mount_tmpfs(&dir, size)?;
        }
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .map_err(|e| e.to_string())?;
        return Ok(dir);
    }
    if let Some(h) = &v.host_path {
        check_host_path(Path::new(&h.path), h.type_.as_deref().unwrap_or(""))?;
        return Ok(PathBuf::from(&h.path));
    }
    let files = if let Some(cm) = &v.config_map {
        let name = cm.name.clone();
        match get::<ConfigMap>(ctx, &ns, &name).await? {
            Some(obj) => key_files(
                config_map_data(&obj),
                cm.items.as_deref(),
                cm.default_mode,
                cm.optional,
                "configmap",
                &name,
            )?,
            None if cm.optional == Some(true) => BTreeMap::new(),
            None => return Err(format!("configmap \"{name}\" not found")),
        }
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        mount_tmpfs(&dir, None)?;
        match get::<Secret>(ctx, &ns, &name).await? {
            Some(obj) => key_files(
                secret_data(&obj),
                s.items.as_deref(),
                s.default_mode,
                s.optional,
                "secret",
                &name,
            )?,
            None if s.optional == Some(true) => BTreeMap::new(),
            None => return Err(format!("secret \"{name}\" not found")),
        }
    } else if let Some(d) = &v.downward_api {
        downward_files(
            ctx,
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode,
        )?
    } else if let Some(p) = &v.projected {
        // On tmpfs as upstream's, for the tokens and secrets it may hold.
        mount_tmpfs(&dir, None)?;
        let mut files = BTreeMap::new();
        let mode = p.default_mode;
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                if let Some(obj) = get::<ConfigMap>(ctx, &ns, &cm.name).await? {
                    files.extend(key_files(
                        config_map_data(&obj),
                        cm.items.as_deref(),
                        mode,
                        cm.optional,
                        "configmap",
                        &cm.name,
                    )?);
                } else if cm.optional != Some(true) {
                    return Err(format!("configmap \"{}\" not found", cm.name));
                }
            }
            if let Some(s) = &source.secret {
                if let Some(obj) = get::<Secret>(ctx, &ns, &s.name).await? {
                    files.extend(key_files(
                        secret_data(&obj),
                        s.items.as_deref(),
                        mode,
                        s.optional,
                        "secret",
                        &s.name,
                    )?);
                } else if s.optional != Some(true) {
                    return Err(format!("secret \"{}\" not found", s.name));
                }
            }
            if let Some(d) = &source.downward_api {
                files.extend(downward_files(
                    ctx,
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                )?);
            }
            if let Some(t) = &source.service_account_token {
                let token = ctx
                    .tokens
                    .token(pod, t.audience.as_deref(), t.expiration_seconds)
                    .await?;
                files.insert(
                    t.path.clone(),
                    Payload {
                        data: token.into_bytes(),
                        mode: mode.unwrap_or(0o644) as u32,
                    },
                );
            }
        }
        files
    } else if let Some(claim) = &v.persistent_volume_claim {
        return claim_path(ctx, &ns, &claim.claim_name).await;
    } else {
        return Err("this volume type is not supported by skiff's agent".into());
    };
    let d = dir.clone();
    tokio::task::spawn_blocking(move || atomicdir::write(&d, &files))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

async fn get<K>(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<K>, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.get_opt(name).await.map_err(|e| e.to_string())
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    out.extend(
        s.string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    out
}

/// The files of a configMap or secret source: every key, or just `items`.
fn key_files(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
    kind: &str,
    name: &str,
) -> Result<BTreeMap<String, Payload>, String> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    let mut files = BTreeMap::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                files.insert(k, Payload { data: v, mode });
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        if !atomicdir::valid_path(&item.path) {
                            return Err(format!("invalid path {:?}", item.path));
                        }
                        let m = item.mode.map_or(mode, |m| m as u32);
                        files.insert(
                            item.path.clone(),
                            Payload {
                                data: v.clone(),
                                mode: m,
                            },
                        );
                    }
                    None if optional == Some(true) => {}
                    None => {
                        return Err(format!(
                            "configuration key \"{}\" not found in {kind} \"{name}\"",
                            item.key
                        ))
                    }
                }
            }
        }
    }
    Ok(files)
}

fn downward_files(
    ctx: &Ctx,
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<BTreeMap<String, Payload>, String> {
    let mut files = BTreeMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::field(pod, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let c = spec
                .containers
                .iter()
                .find(|c| Some(&c.name) == r.container_name.as_ref())
                .ok_or_else(|| format!("container {:?} not found", r.container_name))?;
            let sources = env::Sources {
                node_allocatable: ctx.allocatable.clone(),
                ..Default::default()
            };
            env::resource_field(c, &r.resource, r.divisor.as_ref(), &sources)?
        } else {
            continue;
        };
        let mode = item.mode.or(default_mode).unwrap_or(0o644) as u32;
        files.insert(
            item.path.clone(),
            Payload {
                data: value.into_bytes(),
                mode,
            },
        );
    }
    Ok(files)
}

/// The host folder behind a bound claim: its PV's hostPath or local path.
async fn claim_path(ctx: &Ctx, ns: &str, claim: &str) -> Result<PathBuf, String> {
    let pvc = get::<PersistentVolumeClaim>(ctx, ns, claim)
        .await?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv = pvs
        .get_opt(&pv_name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        check_host_path(
            Path::new(&h.path),
            h.type_.as_deref().unwrap_or("DirectoryOrCreate"),
        )?;
        return Ok(PathBuf::from(h.path));
    }
    if let Some(l) = spec.local {
        check_host_path(Path::new(&l.path), "Directory")?;
        return Ok(PathBuf::from(l.path));
    }
    Err(format!(
        "persistentvolume \"{pv_name}\" is neither hostPath nor local"
    ))
}

/// Upstream's hostPath type checks (and the *OrCreate kinds' creation).
fn check_host_path(path: &Path, ty: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path);
    let p = path.display();
    let is = |want: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!("hostPath type check failed: {p} is not a {want}"))
        }
    };
    match ty {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) => is("directory", m.is_dir()),
            Err(_) => {
                std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(|e| e.to_string())
            }
        },
        "FileOrCreate" => match meta {
            Ok(m) => is("file", m.is_file()),
            Err(_) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::File::create(path)
                    .map(|_| ())
                    .map_err(|e| e.to_string())?;
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .map_err(|e| e.to_string())
            }
        },
        _ => {
            let m = meta.map_err(|_| format!("hostPath type check failed: {p} does not exist"))?;
            let ft = m.file_type();
            match ty {
                "Directory" => is("directory", ft.is_dir()),
                "File" => is("file", ft.is_file()),
                "Socket" => is("socket", ft.is_socket()),
                "CharDevice" => is("character device", ft.is_char_device()),
                "BlockDevice" => is("block device", ft.is_block_device()),
                other => Err(format!("unknown hostPath type {other:?}")),
            }
        }
    }
}

fn mount_tmpfs(dir: &Path, size: Option<i128>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    if sys::is_mount_point(dir) {
        return Ok(());
    }
    let opts = match size {
        Some(bytes) if bytes > 0 => format!("mode=0755,size={bytes}"),
        _ => "mode=0755".to_string(),
    };
    sys::mount(
        Path::new("tmpfs"),
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&opts),
    )
    .map_err(|e| format!("mounting tmpfs: {e}"))
}

/// The container's volume mounts as bind mounts; `env` expands subPathExpr.
pub fn mounts_for(
    container: &Container,
    vols: &BTreeMap<String, PathBuf>,
    env: &[String],
) -> Result<Vec<BindMount>, String> {
    let lookup = |name: &str| {
        env.iter().rev().find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let base = vols
            .get(&m.name)
            .ok_or_else(|| format!("volume {:?} not found", m.name))?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => expand(e, &lookup),
            _ => String::new(),
        };
        let source = if sub.is_empty() {
            base.clone()
        } else {
            if !atomicdir::valid_path(&sub) {
                return Err(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                ));
            }
            let p = base.join(&sub);
            // A subPath that resolves outside its volume (through a symlink) is refused.
            let canon_base = std::fs::canonicalize(base).map_err(|e| e.to_string())?;
            if !p.exists() {
                std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
            }
            let canon = std::fs::canonicalize(&p).map_err(|e| e.to_string())?;
            if !canon.starts_with(&canon_base) {
                return Err(format!("subPath {sub:?} resolves outside its volume"));
            }
            canon
        };
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_modes_and_missing_keys() {
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]);
        let all = key_files(data.clone(), None, Some(0o600), None, "configmap", "c").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o600);
        let items: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "b", "path": "dir/b.txt", "mode": 0o400}]))
                .unwrap();
        let some = key_files(data.clone(), Some(&items), None, None, "configmap", "c").unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/b.txt"]);
        assert_eq!(some["dir/b.txt"].mode, 0o400);
        let missing: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "zz", "path": "z"}])).unwrap();
        assert_eq!(
            key_files(data, Some(&missing), None, None, "configmap", "c").unwrap_err(),
            "configuration key \"zz\" not found in configmap \"c\""
        );
    }

    #[test]
    fn host_path_types() {
        let dir = std::env::temp_dir().join(format!("skiff-hostpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(check_host_path(&dir, "Directory")
            .unwrap_err()
            .contains("does not exist"));
        check_host_path(&dir, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        check_host_path(&dir.join("f"), "FileOrCreate").unwrap();
        assert!(check_host_path(&dir.join("f"), "Directory")
            .unwrap_err()
            .contains("is not a directory"));
        check_host_path(&dir.join("f"), "File").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sub_paths_stay_inside() {
        let dir = std::env::temp_dir().join(format!("skiff-subpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("escape")).unwrap();
        let vols = BTreeMap::from([("v".to_string(), dir.clone())]);
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/data", "subPathExpr": "$(POD)/logs", "readOnly": true}]}))
        .unwrap();
        let m = mounts_for(&c, &vols, &["POD=web-0".into()]).unwrap();
        assert!(m[0].source.ends_with("web-0/logs") && m[0].read_only);
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/x", "subPath": "escape"}]}))
        .unwrap();
        assert!(mounts_for(&c, &vols, &[]).unwrap_err().contains("outside"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
