//! Writing a file whole or not at all, for the CNI result cache and the
//! default network config (a plugin or a reader must never see half a file).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the temp files of concurrent writers in one process.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` atomically with `bytes`: a reader sees the old file or
/// the new one, never half of one. The temp file starts with a dot, so conf
/// dir scans skip it.
pub async fn write_atomic(path: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    })
    .await
    .map_err(std::io::Error::other)?
}
