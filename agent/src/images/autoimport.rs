//! Auto-import for air-gapped nodes, as k3s does with its `agent/images`
//! directory: every image tarball in `<data-dir>/agent/images/` is
//! imported when the agent starts, and new ones every 30 s. Files are
//! remembered by name, size and modification time, so each is imported
//! once — and again only when it changes: a file caught half-copied fails,
//! and is tried again once it is complete; a bad one is not retried every
//! round.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{ArchiveImport, ImageStore};

/// How often the directory is looked at for new files.
pub const INTERVAL: Duration = Duration::from_secs(30);

/// A file as last seen: size and modification time.
type Stamp = (u64, Option<SystemTime>);

/// The directory and what of it has been imported.
#[derive(Debug)]
pub struct AutoImport {
    dir: PathBuf,
    seen: HashMap<PathBuf, Stamp>,
}

fn stamp(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => (m.len(), m.modified().ok()),
        Err(_) => (0, None),
    }
}

impl AutoImport {
    pub fn new(dir: PathBuf) -> Self {
        AutoImport {
            dir,
            seen: HashMap::new(),
        }
    }

    /// Imports the archives not seen yet, or changed since. Blocking.
    pub fn pass_blocking(&mut self, store: &ImageStore) -> Vec<ArchiveImport> {
        if !self.dir.is_dir() {
            return Vec::new();
        }
        let mut stamps = HashMap::new();
        let seen = &self.seen;
        let result = store.import_dir_where(&self.dir, |p| {
            let s = stamp(p);
            let new = seen.get(p) != Some(&s);
            if new {
                stamps.insert(p.to_path_buf(), s);
            }
            new
        });
        match result {
            Ok(done) => {
                self.seen.extend(stamps);
                self.seen.retain(|p, _| p.exists());
                for (path, r) in &done {
                    match r {
                        Ok(names) => {
                            tracing::info!(archive = %path.display(), images = ?names, "auto-imported images")
                        }
                        Err(e) => {
                            tracing::warn!(archive = %path.display(), error = %e, "auto-import failed")
                        }
                    }
                }
                done
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "auto-import directory not read");
                Vec::new()
            }
        }
    }

    /// One pass on a blocking thread.
    pub async fn pass(&mut self, store: &ImageStore) -> Vec<ArchiveImport> {
        let mut me = AutoImport {
            dir: self.dir.clone(),
            seen: std::mem::take(&mut self.seen),
        };
        let store = store.clone();
        match tokio::task::spawn_blocking(move || {
            let done = me.pass_blocking(&store);
            (me, done)
        })
        .await
        {
            Ok((me, done)) => {
                *self = me;
                done
            }
            Err(e) => {
                tracing::warn!(error = %e, "auto-import pass failed");
                Vec::new()
            }
        }
    }

    /// A pass every [`INTERVAL`], for as long as the agent runs.
    pub async fn run(mut self, store: Arc<ImageStore>) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the caller just did a pass
        loop {
            tick.tick().await;
            self.pass(&store).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::testutil::{docker_archive, write, Tar, TempDir, TestImage};

    fn image(text: &[u8]) -> TestImage {
        let layer = Tar::default().file("hello", 0o644, text).finish();
        TestImage::new(vec![(layer.clone(), layer)], &["sh"], "amd64")
    }

    #[tokio::test]
    async fn imports_new_and_changed_files_once() {
        let tmp = TempDir::new("autoimport");
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let dir = tmp.path().join("images");
        let mut auto = AutoImport::new(dir.clone());
        assert!(auto.pass(&store).await.is_empty(), "no directory yet");
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, "a.tar", &docker_archive(&image(b"a"), &["a:1"]));
        write(&dir, "notes.txt", b"not an image");
        let done = auto.pass(&store).await;
        assert_eq!(done.len(), 1);
        assert!(store.resolve("a:1").unwrap().is_some());
        assert!(auto.pass(&store).await.is_empty(), "seen already");
        // A broken file is tried once, and again when it changes.
        write(&dir, "b.tar", b"half a file");
        let done = auto.pass(&store).await;
        assert!(done.len() == 1 && done[0].1.is_err());
        assert!(auto.pass(&store).await.is_empty());
        write(&dir, "b.tar", &docker_archive(&image(b"b"), &["b:1"]));
        let done = auto.pass(&store).await;
        assert!(done.len() == 1 && done[0].1.is_ok(), "{done:?}");
        assert!(store.resolve("b:1").unwrap().is_some());
    }
}
