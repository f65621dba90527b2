//! The image store: a content-addressed store under one directory (the
//! agent's `<data-dir>/agent/content`), shaped like containerd's:
//!
//! ```text
//! blobs/sha256/<hex>        manifests, configs, layer tarballs (verified on write)
//! layers/<diff-id>/rootfs   each layer unpacked once, an overlayfs lowerdir
//! index.json                normalised name (or dangling image id) → manifest digest
//! tmp/                      writes in progress, renamed into place when complete
//! locks/                    flock files (see below)
//! ```
//!
//! Locks, all `flock` so other processes (the CLI beside the agent) count:
//! writers hold `locks/gc.lock` shared (a [`Lease`]) and garbage collection
//! holds it exclusive, so nothing a writer has written but not yet tagged is
//! collected; `locks/index.lock` serialises read-modify-write of
//! index.json; `locks/layer-<hex>.lock` makes concurrent imports of one
//! layer unpack it once.
//!
//! Every method blocks on the file system: async callers use
//! `spawn_blocking`. The store is a path, cheap to clone into such closures.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::compression::decompress;
use super::digest::{hex_of, HashingReader};
use super::error::{ImageError, IoContext};
use super::fsutil::{sync_parent, unique_name, write_atomic, FileLock};
use super::oci::{self, AnyManifest, ConfigFile};
use super::reference::Reference;
use super::unpack::unpack_layer;

/// Manifests, indexes and configs larger than this are refused rather than
/// read into memory (real ones are a few KiB).
const MAX_JSON_BLOB: u64 = 4 << 20;

/// What a container of this image runs, from the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A resolved image, ready to run: its layers are unpacked.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<config digest>`, the image ID as crictl and Docker show it.
    pub id: String,
    /// The manifest (or index) digest its names point at.
    pub digest: String,
    /// Every normalised name of this image, sorted.
    pub names: Vec<String>,
    pub config: ImageConfig,
    /// Unpacked layer directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    /// Config and compressed layer bytes, as containerd counts image size.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: String,
    pub digest: String,
    /// Normalised names; empty for a dangling image.
    pub names: Vec<String>,
    pub size: u64,
}

/// Holding a lease keeps garbage collection away: blobs written while it is
/// held survive until they are tagged. A registry pull holds one from its
/// first `put_blob` to its `tag`.
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
}

#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// index.json
#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(default)]
    images: BTreeMap<String, String>,
}

/// One image as its blobs describe it.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The platform's image manifest (differs from the tagged digest for an index).
    pub manifest: String,
    pub config_digest: String,
    pub config: ImageConfig,
    /// (layer blob digest, diff ID), bottom first.
    pub layers: Vec<(String, String)>,
    pub size: u64,
}

/// Which index entries a query names.
struct Found {
    loaded: Loaded,
    /// The target the entries point at (manifest or index digest).
    digest: String,
    /// The entries the query itself names (what `remove` untags).
    named: Vec<String>,
    /// Every entry of the same image.
    all: Vec<String>,
}

impl ImageStore {
    /// Opens (creating) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let store = ImageStore {
            root: root.to_path_buf(),
        };
        for dir in ["blobs/sha256", "layers", "tmp", "locks"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).at(&p)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keeps garbage collection from running until the lease is dropped.
    pub fn lease(&self) -> Result<Lease, ImageError> {
        Ok(Lease {
            _lock: FileLock::acquire(&self.root.join("locks/gc.lock"), false)?,
        })
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Stores the content `reader` yields under `digest`, refusing it when it
    /// does not hash to that digest. Returns its size. A blob already present
    /// is not read again.
    pub fn put_blob(&self, digest: &str, reader: impl Read) -> Result<u64, ImageError> {
        let path = self.blob_path(digest)?;
        if let Ok(m) = fs::metadata(&path) {
            return Ok(m.len());
        }
        let _lease = self.lease()?;
        self.write_blob(reader, Some(digest)).map(|(_, size)| size)
    }

    /// Stores content whose digest is not known beforehand (`docker save`
    /// archives name files by path); returns `(digest, size)`.
    pub fn add_blob(&self, reader: impl Read) -> Result<(String, u64), ImageError> {
        let _lease = self.lease()?;
        self.write_blob(reader, None)
    }

    fn write_blob(
        &self,
        reader: impl Read,
        expected: Option<&str>,
    ) -> Result<(String, u64), ImageError> {
        let tmp = self.tmp_dir().join(unique_name("blob"));
        let result = (|| {
            let mut out = File::create(&tmp).at(&tmp)?;
            let mut hashing = HashingReader::new(reader);
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                let n = match hashing.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(ImageError::Read {
                            what: expected.unwrap_or("blob").to_string(),
                            source,
                        })
                    }
                };
                out.write_all(&buf[..n]).at(&tmp)?;
            }
            let (actual, size) = hashing.finish().at(&tmp)?;
            if let Some(expected) = expected {
                if actual != expected {
                    return Err(ImageError::DigestMismatch {
                        expected: expected.to_string(),
                        actual,
                    });
                }
            }
            out.sync_all().at(&tmp)?;
            let path = self.blob_path(&actual)?;
            fs::rename(&tmp, &path).at(&path)?;
            sync_parent(&path)?;
            Ok((actual, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads a small JSON blob.
    fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T, ImageError> {
        let path = self.blob_path(digest)?;
        let file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::MissingBlob(digest.to_string()))
            }
            r => r.at(&path)?,
        };
        let mut bytes = Vec::new();
        file.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .at(&path)?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(ImageError::InvalidImage(format!(
                "{digest} is larger than {MAX_JSON_BLOB} bytes"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
            what: digest.to_string(),
            source,
        })
    }

    /// Reads the image a manifest or index digest stands for, choosing this
    /// machine's platform from an index, and checks every blob is present.
    pub(crate) fn load(&self, digest: &str) -> Result<Loaded, ImageError> {
        let mut manifest_digest = digest.to_string();
        let mut m: AnyManifest = self.read_json(digest)?;
        if let Some(entries) = &m.manifests {
            let platform = oci::host_platform();
            let chosen = oci::select_manifest(entries, &platform, |d| self.has_blob(&d.digest))
                .ok_or_else(|| ImageError::NoMatchingPlatform {
                    digest: digest.to_string(),
                    platform: platform.to_string(),
                })?;
            manifest_digest = chosen.digest.clone();
            m = self.read_json(&manifest_digest)?;
            if m.manifests.is_some() {
                return Err(ImageError::InvalidImage(format!(
                    "{digest}: an index inside an index"
                )));
            }
        }
        let config = m.config.ok_or_else(|| {
            ImageError::InvalidImage(format!("{manifest_digest}: manifest without config"))
        })?;
        let layers = m.layers.unwrap_or_default();
        for d in std::iter::once(&config).chain(&layers) {
            if !self.has_blob(&d.digest) {
                return Err(ImageError::MissingBlob(d.digest.clone()));
            }
        }
        let file: ConfigFile = self.read_json(&config.digest)?;
        let diff_ids = file.rootfs.diff_ids;
        if diff_ids.len() != layers.len() {
            return Err(ImageError::InvalidImage(format!(
                "{manifest_digest}: {} layers but {} diff IDs in the config",
                layers.len(),
                diff_ids.len()
            )));
        }
        for d in &diff_ids {
            hex_of(d)?;
        }
        let run = file.config.unwrap_or_default();
        Ok(Loaded {
            manifest: manifest_digest,
            config_digest: config.digest.clone(),
            config: ImageConfig {
                entrypoint: run.entrypoint.unwrap_or_default(),
                cmd: run.cmd.unwrap_or_default(),
                env: run.env.unwrap_or_default(),
                working_dir: run.working_dir.filter(|s| !s.is_empty()),
                user: run.user.filter(|s| !s.is_empty()),
            },
            size: config.size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers: layers.into_iter().map(|l| l.digest).zip(diff_ids).collect(),
        })
    }

    /// The unpacked root of the layer with this diff ID.
    fn layer_root(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join("layers")
            .join(hex_of(diff_id)?)
            .join("rootfs"))
    }

    /// Unpacks a layer unless it already is; returns its rootfs directory.
    /// The decompressed stream must hash to `diff_id`: the directory is
    /// shared by every image naming that diff ID, so it is trusted only
    /// after the check. Callers hold a lease.
    fn ensure_layer(&self, blob: &str, diff_id: &str) -> Result<PathBuf, ImageError> {
        let rootfs = self.layer_root(diff_id)?;
        if rootfs.is_dir() {
            return Ok(rootfs);
        }
        let hex = hex_of(diff_id)?;
        let _lock = FileLock::acquire(&self.root.join(format!("locks/layer-{hex}.lock")), true)?;
        if rootfs.is_dir() {
            return Ok(rootfs); // another import unpacked it meanwhile
        }
        let tmp = self.tmp_dir().join(unique_name("layer"));
        let result = (|| {
            let tmp_rootfs = tmp.join("rootfs");
            fs::create_dir_all(&tmp_rootfs).at(&tmp_rootfs)?;
            let blob_path = self.blob_path(blob)?;
            let file = File::open(&blob_path).at(&blob_path)?;
            let mut hashing = HashingReader::new(decompress(file).at(&blob_path)?);
            unpack_layer(&mut hashing, &tmp_rootfs)?;
            let (actual, _) = hashing.finish().at(&blob_path)?;
            if actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    expected: diff_id.to_string(),
                    actual,
                });
            }
            let dir = self.root.join("layers").join(hex);
            fs::rename(&tmp, &dir).at(&dir)?;
            sync_parent(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| rootfs).map_err(|e| ImageError::Layer {
            digest: blob.to_string(),
            source: Box::new(e),
        })
    }

    fn unpack_layers(&self, loaded: &Loaded) -> Result<Vec<PathBuf>, ImageError> {
        loaded
            .layers
            .iter()
            .map(|(blob, diff_id)| self.ensure_layer(blob, diff_id))
            .collect()
    }

    /// Points `name` at a manifest or index already in the store, after
    /// checking its blobs and unpacking its layers. Returns the normalised name.
    pub fn tag(&self, name: &str, manifest_digest: &str) -> Result<String, ImageError> {
        let key = Reference::parse(name)?.to_string();
        hex_of(manifest_digest)?;
        let _lease = self.lease()?;
        let loaded = self.load(manifest_digest)?;
        self.unpack_layers(&loaded)?;
        self.update_index(|idx| {
            idx.images.insert(key.clone(), manifest_digest.to_string());
            // A name replaces the image's dangling entry.
            idx.images.remove(&loaded.config_digest);
            Ok(())
        })?;
        Ok(key)
    }

    /// Keeps an image that has no name (an archive without tags) under its
    /// ID, unless a name already keeps it. Returns the ID.
    pub(crate) fn tag_dangling(&self, manifest_digest: &str) -> Result<String, ImageError> {
        let _lease = self.lease()?;
        let loaded = self.load(manifest_digest)?;
        self.unpack_layers(&loaded)?;
        let id = loaded.config_digest.clone();
        self.update_index(|idx| {
            let named = idx.images.iter().any(|(k, v)| {
                !k.starts_with("sha256:")
                    && self
                        .load(v)
                        .is_ok_and(|l| l.config_digest == loaded.config_digest)
            });
            if !named {
                idx.images.insert(id.clone(), manifest_digest.to_string());
            }
            Ok(())
        })?;
        Ok(id)
    }

    fn read_index(&self) -> Result<IndexFile, ImageError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
                what: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(e).at(&path),
        }
    }

    fn update_index<T>(
        &self,
        f: impl FnOnce(&mut IndexFile) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let _lock = FileLock::acquire(&self.root.join("locks/index.lock"), true)?;
        let mut idx = self.read_index()?;
        let out = f(&mut idx)?;
        idx.schema_version = 1;
        let bytes = serde_json::to_vec_pretty(&idx).map_err(|source| ImageError::Json {
            what: "index".into(),
            source,
        })?;
        write_atomic(&self.root.join("index.json"), &bytes)?;
        Ok(out)
    }

    /// Finds the image a query names: a name (normalised), `name@digest`,
    /// an image ID `sha256:<hex>`, or an unambiguous ID prefix of at least
    /// 12 hex digits (what `skiff images ls` shows).
    fn find(&self, idx: &IndexFile, query: &str) -> Result<Option<Found>, ImageError> {
        if query.starts_with("sha256:") {
            hex_of(query)?;
            let hits = self.entries_where(idx, |_, _, l| l.config_digest == query);
            return self.one_image(idx, query, hits);
        }
        let parsed = Reference::parse(query);
        if let Ok(r) = &parsed {
            let key = r.to_string();
            if let Some(digest) = idx.images.get(&key) {
                let loaded = self.load(digest)?;
                return self.one_image(idx, query, vec![(key, digest.clone(), loaded)]);
            }
            if let Some(want) = &r.digest {
                // name@digest: any tag of that repository pointing at it.
                let name = r.name();
                let hits = self.entries_where(idx, |k, v, l| {
                    Reference::parse(k).is_ok_and(|kr| kr.name() == name)
                        && (v == want || &l.manifest == want)
                });
                if !hits.is_empty() {
                    return self.one_image(idx, query, hits);
                }
            }
        }
        let hex_prefix = (12..=64).contains(&query.len())
            && query
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex_prefix {
            let want = format!("sha256:{query}");
            let hits = self.entries_where(idx, |_, _, l| l.config_digest.starts_with(&want));
            return self.one_image(idx, query, hits);
        }
        parsed?;
        Ok(None)
    }

    /// The index entries `(name, target digest, image)` that `pred` picks.
    /// An entry that cannot be read is skipped with a warning, so one
    /// damaged image does not hide the others.
    fn entries_where(
        &self,
        idx: &IndexFile,
        pred: impl Fn(&str, &str, &Loaded) -> bool,
    ) -> Vec<(String, String, Loaded)> {
        let mut out = Vec::new();
        for (k, v) in &idx.images {
            match self.load(v) {
                Ok(loaded) if pred(k, v, &loaded) => out.push((k.clone(), v.clone(), loaded)),
                Ok(_) => {}
                Err(e) => tracing::warn!(image = %k, error = %e, "image store: unreadable image"),
            }
        }
        out
    }

    /// The image the matched entries name; an error if they name several.
    fn one_image(
        &self,
        idx: &IndexFile,
        query: &str,
        hits: Vec<(String, String, Loaded)>,
    ) -> Result<Option<Found>, ImageError> {
        let ids: BTreeSet<&str> = hits
            .iter()
            .map(|(_, _, l)| l.config_digest.as_str())
            .collect();
        if ids.len() > 1 {
            return Err(ImageError::Ambiguous(query.to_string()));
        }
        let named = hits.iter().map(|(k, _, _)| k.clone()).collect();
        let Some((_, digest, loaded)) = hits.into_iter().next() else {
            return Ok(None);
        };
        let all = self
            .entries_where(idx, |_, _, l| l.config_digest == loaded.config_digest)
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        Ok(Some(Found {
            loaded,
            digest,
            named,
            all,
        }))
    }

    /// The image `name` refers to (see [`ImageStore::remove`] for the forms
    /// a name can take), with its layers unpacked; `None` if unknown.
    pub fn resolve(&self, name: &str) -> Result<Option<Image>, ImageError> {
        let idx = self.read_index()?;
        let Some(found) = self.find(&idx, name)? else {
            return Ok(None);
        };
        let _lease = self.lease()?;
        // Normally a no-op: tag unpacked them; this heals a store whose
        // layer directories were removed by hand.
        let layers = self.unpack_layers(&found.loaded)?;
        let mut names: Vec<String> = found
            .all
            .into_iter()
            .filter(|k| !k.starts_with("sha256:"))
            .collect();
        names.sort();
        Ok(Some(Image {
            id: found.loaded.config_digest,
            digest: found.digest,
            names,
            config: found.loaded.config,
            layers,
            size: found.loaded.size,
        }))
    }

    /// Every image, one summary per image ID, sorted by first name.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let idx = self.read_index()?;
        let mut by_id: BTreeMap<String, ImageSummary> = BTreeMap::new();
        for (k, v) in &idx.images {
            let loaded = match self.load(v) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(image = %k, error = %e, "image store: unreadable image");
                    continue;
                }
            };
            let s = by_id
                .entry(loaded.config_digest.clone())
                .or_insert_with(|| ImageSummary {
                    id: loaded.config_digest.clone(),
                    digest: v.clone(),
                    names: Vec::new(),
                    size: loaded.size,
                });
            if !k.starts_with("sha256:") {
                s.names.push(k.clone());
            }
        }
        let mut out: Vec<ImageSummary> = by_id.into_values().collect();
        out.sort_by(|a, b| (a.names.first(), &a.id).cmp(&(b.names.first(), &b.id)));
        Ok(out)
    }

    /// Untags `name`: a name untags that name; an image ID (or ID prefix)
    /// untags every name of the image. Blobs and layers no image references
    /// any more are then deleted, once no lease is held: never call this
    /// while holding a [`Lease`].
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        self.update_index(|idx| {
            let found = self
                .find(idx, name)?
                .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
            // An ID query names every entry of the image; a name, itself.
            for k in &found.named {
                idx.images.remove(k);
            }
            Ok(())
        })?;
        self.collect_garbage().map(|_| ())
    }

    /// Deletes blobs and unpacked layers no index entry reaches, and
    /// leftovers of interrupted writes. Waits for every lease to end.
    /// Returns how many blobs and layers were deleted.
    pub fn collect_garbage(&self) -> Result<(usize, usize), ImageError> {
        let _gc = FileLock::acquire(&self.root.join("locks/gc.lock"), true)?;
        let idx = self.read_index()?;
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for digest in idx.images.values() {
            if let Err(e) = self.mark(digest, &mut blobs, &mut layers) {
                // Only a store edited by hand gets here (tag checks every
                // blob); what this entry reaches can no longer be known.
                tracing::warn!(%digest, error = %e, "image store: unreadable image; its blobs may be collected");
            }
        }
        let mut removed = (0, 0);
        let blob_dir = self.root.join("blobs/sha256");
        for (name, path) in read_dir(&blob_dir)? {
            if !blobs.contains(&format!("sha256:{name}")) {
                fs::remove_file(&path).at(&path)?;
                removed.0 += 1;
            }
        }
        let layer_dir = self.root.join("layers");
        for (name, path) in read_dir(&layer_dir)? {
            if !layers.contains(&name) {
                fs::remove_dir_all(&path).at(&path)?;
                removed.1 += 1;
            }
        }
        // No lease is held, so nothing in tmp/ is being written, and no
        // layer lock is held or waited on.
        for (_, path) in read_dir(&self.tmp_dir())? {
            let r = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            r.at(&path)?;
        }
        for (name, path) in read_dir(&self.root.join("locks"))? {
            if name.starts_with("layer-") {
                fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(removed)
    }

    /// Adds the blobs and layers an index entry reaches. Reads only what
    /// it must, so a part it cannot read (an attestation's odd config) costs
    /// that part alone.
    fn mark(
        &self,
        digest: &str,
        blobs: &mut BTreeSet<String>,
        layers: &mut BTreeSet<String>,
    ) -> Result<(), ImageError> {
        if !blobs.insert(digest.to_string()) {
            return Ok(());
        }
        let m: AnyManifest = self.read_json(digest)?;
        // Every platform of an index that is present is kept: the entry
        // names the whole index.
        for child in m.manifests.iter().flatten() {
            if self.has_blob(&child.digest) {
                if let Err(e) = self.mark(&child.digest, blobs, layers) {
                    tracing::warn!(digest = %child.digest, error = %e, "image store: unreadable manifest");
                }
            }
        }
        if let Some(config) = &m.config {
            blobs.insert(config.digest.clone());
            blobs.extend(m.layers.iter().flatten().map(|l| l.digest.clone()));
            let file: ConfigFile = self.read_json(&config.digest)?;
            for d in &file.rootfs.diff_ids {
                if let Ok(hex) = hex_of(d) {
                    layers.insert(hex.to_string());
                }
            }
        }
        Ok(())
    }
}

/// (file name, path) of a directory's entries.
fn read_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, ImageError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    Ok(out)
}
