//! Kubelet's atomic writer for configMap, secret, downwardAPI and projected
//! volumes: the files live in a timestamped directory, `..data` is a
//! symlink to it, and each visible name is a symlink through `..data`. An
//! update writes a new directory and swaps `..data` with one rename, so a
//! container never sees half of an update.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

/// One file of the volume: content and mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Rejects paths that are absolute, contain `..`, or start with `..`
/// (the writer's own names), as upstream validates item paths.
pub fn valid_path(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && !p.starts_with("..")
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Makes `dir` hold exactly `files` (relative paths). Blocking.
pub fn write(dir: &Path, files: &BTreeMap<String, Payload>) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link) {
        if same_content(&dir.join(&current), files) {
            return Ok(());
        }
    }
    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f");
    let new_dir = dir.join(stamp.to_string());
    std::fs::create_dir_all(&new_dir)?;
    for (rel, p) in files {
        if !valid_path(rel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid path {rel:?}"),
            ));
        }
        let path = new_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &p.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(p.mode))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(new_dir.file_name().unwrap_or_default(), &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    // The visible names: one symlink per top-level entry, through ..data.
    let wanted: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !wanted.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn same_content(current: &Path, files: &BTreeMap<String, Payload>) -> bool {
    let mut count = 0;
    for (rel, p) in files {
        let path = current.join(rel);
        match (std::fs::read(&path), std::fs::metadata(&path)) {
            (Ok(data), Ok(meta))
                if data == p.data && meta.permissions().mode() & 0o7777 == p.mode =>
            {
                count += 1
            }
            _ => return false,
        }
    }
    count_files(current) == count
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                1
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_content_atomically() {
        let dir = std::env::temp_dir().join(format!("skiff-atomicdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut files = BTreeMap::new();
        files.insert(
            "a".to_string(),
            Payload {
                data: b"1".to_vec(),
                mode: 0o644,
            },
        );
        files.insert(
            "sub/b".to_string(),
            Payload {
                data: b"2".to_vec(),
                mode: 0o400,
            },
        );
        write(&dir, &files).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(dir.join("sub/b")).unwrap(), b"2");
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        write(&dir, &files).unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("..data")).unwrap(),
            first,
            "unchanged content is not rewritten"
        );
        files.remove("sub/b");
        files.insert(
            "a".to_string(),
            Payload {
                data: b"3".to_vec(),
                mode: 0o644,
            },
        );
        write(&dir, &files).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"3");
        assert!(!dir.join("sub").exists());
        assert!(!dir.join(&first).exists(), "the old generation is removed");
        assert!(
            !valid_path("../x") && !valid_path("/x") && !valid_path("..data") && valid_path("x/y")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
