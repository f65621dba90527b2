//! File-system primitives the store is built on: unique temporary names,
//! atomic replacement of a file (temp + fsync + rename), and `flock` locks,
//! which exclude other threads and other processes (`skiff images import`
//! beside a running agent) alike, and vanish when their holder dies.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{ImageError, IoContext};

/// A name no other writer in any process uses at the same time.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Replaces `path` with `bytes` so readers see the old or the new content,
/// never a part. The temporary file sits beside `path`, out of the store's
/// tmp/ that garbage collection empties.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(unique_name(&format!(".{name}.tmp")));
    let result = (|| {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        fs::rename(&tmp, path).at(path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename into `path`'s directory durable.
pub fn sync_parent(path: &Path) -> Result<(), ImageError> {
    match path.parent() {
        Some(dir) => File::open(dir).and_then(|d| d.sync_all()).at(dir),
        None => Ok(()),
    }
}

/// An `flock` on a lock file, released when dropped (the file is closed).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the lock is held; `exclusive` or shared.
    pub fn acquire(path: &Path, exclusive: bool) -> Result<FileLock, ImageError> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .at(path)?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err).at(path);
            }
        }
    }
}
