//! Test helpers: self-removing temp dirs, in-memory layer tarballs
//! (including the malformed ones a well-behaved builder refuses to write),
//! and whole image archives in both OCI-layout and `docker save` form.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::digest::of_bytes;
use super::fsutil::unique_name;

/// A directory under the system temp dir, removed with everything in it.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique_name(&format!("skiff-images-{tag}")));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn is_root() -> bool {
    super::unpack::is_root()
}

pub const MTIME: u64 = 1_500_000_000;

/// Builds a tar in memory, entry by entry.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }
}

impl Tar {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// An entry whose name is written as given, unchecked (`../x`, `/x`).
    pub fn raw(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    pub fn dir(self, name: &str, mode: u32) -> Self {
        self.owned(tar::EntryType::Directory, name, "", mode, 0, b"")
    }

    pub fn file(self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.owned(tar::EntryType::Regular, name, "", mode, 0, data)
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.owned(tar::EntryType::Symlink, name, target, 0o777, 0, b"")
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.owned(tar::EntryType::Link, name, target, 0o644, 0, b"")
    }

    pub fn owned(
        mut self,
        kind: tar::EntryType,
        name: &str,
        link: &str,
        mode: u32,
        uid: u64,
        data: &[u8],
    ) -> Self {
        let mut h = Self::header(kind, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(uid);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

/// An image's blobs: layers as stored (maybe compressed) and uncompressed.
pub struct TestImage {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    /// (stored blob, uncompressed tar)
    pub layers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TestImage {
    /// `layers`: (stored bytes, uncompressed tar); `arch` for the config.
    pub fn new(layers: Vec<(Vec<u8>, Vec<u8>)>, cmd: &[&str], arch: &str) -> TestImage {
        let diff_ids: Vec<String> = layers.iter().map(|(_, raw)| of_bytes(raw)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {
                "Cmd": cmd,
                "Entrypoint": null,
                "Env": ["PATH=/bin"],
                "WorkingDir": "/work",
                "User": "65534",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": of_bytes(&config),
                "size": config.len(),
            },
            "layers": layers.iter().map(|(blob, _)| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": of_bytes(blob),
                "size": blob.len(),
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        TestImage {
            config,
            manifest,
            layers,
        }
    }

    pub fn id(&self) -> String {
        of_bytes(&self.config)
    }

    pub fn digest(&self) -> String {
        of_bytes(&self.manifest)
    }

    pub fn blobs(&self) -> Vec<Vec<u8>> {
        let mut out = vec![self.config.clone(), self.manifest.clone()];
        out.extend(self.layers.iter().map(|(b, _)| b.clone()));
        out
    }
}

fn blob_path(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", &of_bytes(bytes)["sha256:".len()..])
}

/// An OCI layout tar: index.json entries (descriptor JSON, usually with a
/// name annotation) and the blobs, index.json last as many tools write it.
pub fn oci_archive(index_entries: Vec<serde_json::Value>, blobs: &[Vec<u8>]) -> Vec<u8> {
    let mut t = Tar::default()
        .file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .dir("blobs", 0o755)
        .dir("blobs/sha256", 0o755);
    let mut seen = std::collections::BTreeSet::new();
    for b in blobs {
        if seen.insert(of_bytes(b)) {
            t = t.file(&blob_path(b), 0o644, b);
        }
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index_entries,
    }))
    .unwrap();
    t.file("index.json", 0o644, &index).finish()
}

/// The index.json entry for an image, named the way containerd names it.
pub fn named_entry(img: &TestImage, name: Option<&str>) -> serde_json::Value {
    let mut d = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": img.digest(),
        "size": img.manifest.len(),
    });
    if let Some(name) = name {
        d["annotations"] = json!({
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": "latest",
        });
    }
    d
}

/// A classic `docker save` tar: `<id>.json` config, `<n>/layer.tar`
/// layers (the second of two equal layers as a symlink, as Docker does),
/// manifest.json last.
pub fn docker_archive(img: &TestImage, tags: &[&str]) -> Vec<u8> {
    let config_name = format!("{}.json", &img.id()["sha256:".len()..]);
    let mut t = Tar::default().file(&config_name, 0o644, &img.config);
    let mut paths: Vec<String> = Vec::new();
    for (i, (_, raw)) in img.layers.iter().enumerate() {
        let path = format!("l{i}/layer.tar");
        let earlier = img.layers[..i].iter().position(|(_, r)| r == raw);
        t = t
            .dir(&format!("l{i}"), 0o755)
            .file(&format!("l{i}/VERSION"), 0o644, b"1.0");
        t = match earlier {
            Some(j) => t.symlink(&path, &format!("../l{j}/layer.tar")),
            None => t.file(&path, 0o644, raw),
        };
        paths.push(path);
    }
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": paths,
    }]))
    .unwrap();
    t.file("manifest.json", 0o644, &manifest).finish()
}

/// Writes bytes to a file in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}
