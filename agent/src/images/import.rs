//! Importing image archives, as `ctr images import` and `docker load` do:
//! an OCI image layout in a tar (`oci-layout`, `index.json`,
//! `blobs/sha256/…`: what buildkit, skopeo and `ctr export` write) or a
//! `docker save` tar (`manifest.json` with `RepoTags`, files by path; Docker
//! 25+ writes both, and the OCI index is preferred). One streaming pass:
//! every blob goes into the store as it passes, since archives often put
//! their index last; the small metadata files then say what to tag.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::compression::{decompress, Compression};
use super::digest::hex_of;
use super::error::{ImageError, IoContext};
use super::oci::{self, Descriptor, DockerSaveEntry, Manifest};
use super::store::ImageStore;

/// The metadata files are read into memory; real ones are kilobytes.
const MAX_METADATA: u64 = 16 << 20;
/// Symlink hops followed when `docker save` links a layer to another's.
const MAX_LINK_HOPS: usize = 16;

/// One archive of a directory import and what became of it.
pub type ArchiveImport = (PathBuf, Result<Vec<String>, ImageError>);

/// What one pass over an archive gathered.
#[derive(Default)]
struct Scan {
    /// `index.json`, `manifest.json`, `oci-layout` contents.
    metadata: HashMap<String, Vec<u8>>,
    /// Archive path → digest of the blob stored from it.
    files: HashMap<String, String>,
    /// Archive path → archive path it links to (symlinks and hard links).
    links: HashMap<String, String>,
}

impl ImageStore {
    /// Imports every image of an archive file (plain, gzip or zstd tar) and
    /// returns the names it tagged (image IDs for images without a name).
    /// Blocking.
    pub fn import_tar(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let file = File::open(path).at(path)?;
        self.import_reader(file)
    }

    /// [`ImageStore::import_tar`] from a stream.
    pub fn import_reader(&self, reader: impl Read) -> Result<Vec<String>, ImageError> {
        // Held until every image is tagged, so no collection runs between
        // writing a blob and naming the image that needs it.
        let _lease = self.lease()?;
        let scan = self.scan(reader)?;
        if let Some(index) = scan.metadata.get("index.json") {
            self.import_oci(index)
        } else if let Some(manifest) = scan.metadata.get("manifest.json") {
            self.import_docker(&scan, manifest)
        } else {
            Err(ImageError::UnsupportedArchive(
                "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"
                    .into(),
            ))
        }
    }

    /// Imports every `*.tar`, `*.tar.gz`, `*.tgz` and `*.tar.zst` file of a
    /// directory, in name order (the seam for an air-gapped node's
    /// auto-import directory). One result per archive: a bad archive does
    /// not keep the others out.
    pub fn import_dir(&self, dir: &Path) -> Result<Vec<ArchiveImport>, ImageError> {
        self.import_dir_where(dir, |_| true)
    }

    /// [`ImageStore::import_dir`] of the archives `wanted` accepts (the
    /// auto-import skips those it has seen).
    pub fn import_dir_where(
        &self,
        dir: &Path,
        mut wanted: impl FnMut(&Path) -> bool,
    ) -> Result<Vec<ArchiveImport>, ImageError> {
        let mut archives = Vec::new();
        for e in std::fs::read_dir(dir).at(dir)? {
            let path = e.at(dir)?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let is_archive = [".tar", ".tar.gz", ".tgz", ".tar.zst"]
                .iter()
                .any(|ext| name.ends_with(ext));
            if is_archive && path.is_file() && wanted(&path) {
                archives.push(path);
            }
        }
        archives.sort();
        Ok(archives
            .into_iter()
            .map(|p| {
                let r = self.import_tar(&p);
                (p, r)
            })
            .collect())
    }

    fn scan(&self, reader: impl Read) -> Result<Scan, ImageError> {
        let read_err = |source| ImageError::Read {
            what: "archive".into(),
            source,
        };
        let mut archive = tar::Archive::new(decompress(reader).map_err(read_err)?);
        let mut scan = Scan::default();
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let Some(path) = archive_path(&entry.path().map_err(read_err)?) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().map_err(read_err)?.unwrap_or_default();
                let base = if kind.is_symlink() {
                    path.rsplit_once('/').map_or("", |(dir, _)| dir)
                } else {
                    "" // hard link names are archive paths
                };
                if let Some(t) = join_archive_path(base, &target) {
                    scan.links.insert(path, t);
                }
                continue;
            }
            if !kind.is_file() && kind != tar::EntryType::Continuous {
                continue;
            }
            let base = path.rsplit('/').next().unwrap_or_default();
            match path.as_str() {
                "index.json" | "manifest.json" | "oci-layout" => {
                    let mut bytes = Vec::new();
                    (&mut entry)
                        .take(MAX_METADATA + 1)
                        .read_to_end(&mut bytes)
                        .map_err(read_err)?;
                    if bytes.len() as u64 > MAX_METADATA {
                        return Err(ImageError::UnsupportedArchive(format!(
                            "{path} is larger than {MAX_METADATA} bytes"
                        )));
                    }
                    scan.metadata.insert(path, bytes);
                }
                p if p.starts_with("blobs/sha256/") => {
                    let digest = format!("sha256:{}", &p["blobs/sha256/".len()..]);
                    hex_of(&digest)?;
                    self.put_blob(&digest, &mut entry)?;
                    scan.files.insert(path, digest);
                }
                // Old docker save bookkeeping nothing here reads.
                _ if matches!(base, "repositories" | "VERSION" | "json") => {}
                _ if path.starts_with("blobs/") => {} // other algorithms
                _ => {
                    let (digest, _) = self.add_blob(&mut entry)?;
                    scan.files.insert(path, digest);
                }
            }
        }
        Ok(scan)
    }

    fn import_oci(&self, index: &[u8]) -> Result<Vec<String>, ImageError> {
        let index: oci::Index =
            serde_json::from_slice(index).map_err(|source| ImageError::Json {
                what: "index.json".into(),
                source,
            })?;
        if index.manifests.is_empty() {
            return Err(ImageError::UnsupportedArchive(
                "index.json lists no image".into(),
            ));
        }
        let mut names = Vec::new();
        for d in &index.manifests {
            if !self.has_blob(&d.digest) {
                return Err(ImageError::MissingBlob(d.digest.clone()));
            }
            names.push(match image_name(d) {
                Some(name) => self.tag(&name, &d.digest)?,
                None => self.tag_dangling(&d.digest)?,
            });
        }
        Ok(names)
    }

    fn import_docker(&self, scan: &Scan, manifest: &[u8]) -> Result<Vec<String>, ImageError> {
        let entries: Vec<DockerSaveEntry> =
            serde_json::from_slice(manifest).map_err(|source| ImageError::Json {
                what: "manifest.json".into(),
                source,
            })?;
        if entries.is_empty() {
            return Err(ImageError::UnsupportedArchive(
                "manifest.json lists no image".into(),
            ));
        }
        let mut names = Vec::new();
        for e in &entries {
            let config = self.descriptor(scan, &e.config, oci::MEDIA_OCI_CONFIG.into())?;
            let layers = e
                .layers
                .iter()
                .map(|path| {
                    let digest = scan_lookup(scan, path)?;
                    let media_type = self.compression_of(&digest)?.layer_media_type();
                    self.descriptor(scan, path, media_type.into())
                })
                .collect::<Result<Vec<_>, _>>()?;
            // docker save has no manifest blob: write the OCI manifest it
            // implies, so the image is stored like any other.
            let manifest = Manifest {
                schema_version: 2,
                media_type: oci::MEDIA_OCI_MANIFEST.into(),
                config,
                layers,
            };
            let bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json {
                what: "manifest".into(),
                source,
            })?;
            let (digest, _) = self.add_blob(&bytes[..])?;
            let tags = e.repo_tags.as_deref().unwrap_or_default();
            if tags.is_empty() {
                names.push(self.tag_dangling(&digest)?);
            }
            for tag in tags {
                names.push(self.tag(tag, &digest)?);
            }
        }
        Ok(names)
    }

    /// A descriptor for the blob stored from an archive path.
    fn descriptor(
        &self,
        scan: &Scan,
        path: &str,
        media_type: String,
    ) -> Result<Descriptor, ImageError> {
        let digest = scan_lookup(scan, path)?;
        let blob = self.blob_path(&digest)?;
        let size = std::fs::metadata(&blob).at(&blob)?.len();
        Ok(Descriptor {
            media_type,
            digest,
            size,
            platform: None,
            annotations: Default::default(),
        })
    }

    fn compression_of(&self, digest: &str) -> Result<Compression, ImageError> {
        let path = self.blob_path(digest)?;
        let mut head = Vec::with_capacity(8);
        File::open(&path)
            .and_then(|f| f.take(8).read_to_end(&mut head))
            .at(&path)?;
        Compression::detect(&head).map_err(|source| ImageError::Layer {
            digest: digest.to_string(),
            source: Box::new(ImageError::Read {
                what: digest.to_string(),
                source,
            }),
        })
    }
}

/// The blob digest an archive path holds, through links.
fn scan_lookup(scan: &Scan, path: &str) -> Result<String, ImageError> {
    let mut p = join_archive_path("", Path::new(path));
    for _ in 0..MAX_LINK_HOPS {
        let Some(cur) = p else { break };
        if let Some(d) = scan.files.get(&cur) {
            return Ok(d.clone());
        }
        p = scan.links.get(&cur).cloned();
    }
    Err(ImageError::UnsupportedArchive(format!(
        "manifest.json names {path:?}, which the archive does not hold"
    )))
}

/// The name an OCI layout gives an image: containerd's annotation (a full
/// name), else the OCI ref name when it is a full name rather than a bare tag.
fn image_name(d: &Descriptor) -> Option<String> {
    if let Some(n) = d.annotations.get(oci::ANNOTATION_CONTAINERD_NAME) {
        return Some(n.clone());
    }
    d.annotations
        .get(oci::ANNOTATION_REF_NAME)
        .filter(|n| n.contains(['/', ':', '@']))
        .cloned()
}

/// An entry path as the archive's relative `a/b/c`; `None` for the root.
fn archive_path(p: &Path) -> Option<String> {
    join_archive_path("", p)
}

/// `target` resolved against archive directory `base`; `None` if it leaves
/// the archive or is empty.
fn join_archive_path(base: &str, target: &Path) -> Option<String> {
    let mut parts: Vec<String> = if target.is_absolute() {
        Vec::new()
    } else {
        base.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(
            archive_path(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(archive_path(Path::new("./")), None);
        assert_eq!(
            join_archive_path("abc", Path::new("../def/layer.tar")).as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(join_archive_path("", Path::new("../x")), None);
    }
}
