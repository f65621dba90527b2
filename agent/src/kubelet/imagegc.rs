//! Image garbage collection by disk usage, as kubelet's: when the image
//! store's filesystem is fuller than the high threshold, images no
//! container on this node uses are removed, least recently used first,
//! until usage is under the low threshold. As kubelet's ImageMinimumGCAge,
//! an image is never removed within 2 minutes of the agent first seeing it
//! (just imported or pulled, or present when the agent started).

use super::Ctx;
use crate::images::ImageSummary;
use crate::runtime::sys;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// kubelet's ImageGCPeriod.
const PERIOD: Duration = Duration::from_secs(300);
/// kubelet's ImageMinimumGCAge.
const MIN_AGE: Duration = Duration::from_secs(120);

/// Percent of the filesystem holding `dir` that is in use.
pub fn usage_percent(dir: &Path) -> Option<u8> {
    let st = sys::statvfs(dir)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    // As df computes it: used over what non-root users could have.
    let usable = used + st.f_bavail;
    Some(((used * 100).div_ceil(usable.max(1))) as u8)
}

/// The images to remove, least recently used first, until `to_free` bytes
/// are freed; images in use are never picked.
pub fn pick(
    images: &[ImageSummary],
    in_use: &HashSet<String>,
    last_used: &dyn Fn(&str) -> SystemTime,
    to_free: u64,
) -> Vec<String> {
    let mut candidates: Vec<&ImageSummary> =
        images.iter().filter(|i| !in_use.contains(&i.id)).collect();
    candidates.sort_by_key(|i| last_used(&i.id));
    let mut freed = 0;
    let mut out = Vec::new();
    for i in candidates {
        if freed >= to_free {
            break;
        }
        freed += i.size;
        out.push(i.id.clone());
    }
    out
}

/// Runs the collector until the process ends.
pub async fn run(ctx: Arc<Ctx>, high: u8, low: u8) {
    let mut tick = tokio::time::interval(PERIOD);
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let started = SystemTime::now();
    loop {
        tick.tick().await;
        let root = ctx.images.root().to_path_buf();
        let Some(usage) = usage_percent(&root) else {
            continue;
        };
        if usage < high {
            continue;
        }
        let in_use: HashSet<String> = ctx.runtime.list().into_iter().map(|m| m.image_id).collect();
        let store = ctx.images.clone();
        let Ok(Ok(mut images)) = tokio::task::spawn_blocking(move || store.list()).await else {
            continue;
        };
        let now = Instant::now();
        first_seen.retain(|id, _| images.iter().any(|i| &i.id == id));
        for i in &images {
            first_seen.entry(i.id.clone()).or_insert(now);
        }
        images.retain(|i| {
            first_seen
                .get(&i.id)
                .is_some_and(|t| now.duration_since(*t) >= MIN_AGE)
        });
        let total = disk_bytes(&root);
        let to_free = total * u64::from(usage.saturating_sub(low)) / 100;
        let used = ctx
            .image_last_used
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        // Never used since the agent started: as old as the agent's start.
        let last_used = |id: &str| used.get(id).copied().unwrap_or(started);
        for id in pick(&images, &in_use, &last_used, to_free) {
            let store = ctx.images.clone();
            let what = id.clone();
            match tokio::task::spawn_blocking(move || store.remove(&what)).await {
                Ok(Ok(())) => tracing::info!(image = %id, usage, high, "image garbage collected"),
                Ok(Err(e)) => tracing::warn!(image = %id, error = %e, "image not collected"),
                Err(_) => {}
            }
        }
    }
}

fn disk_bytes(dir: &Path) -> u64 {
    sys::statvfs(dir).map_or(0, |st| st.f_blocks * st.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, size: u64) -> ImageSummary {
        ImageSummary {
            id: id.into(),
            digest: String::new(),
            names: vec![],
            size,
        }
    }

    #[test]
    fn picks_unused_least_recently_used_first() {
        let images = [image("a", 100), image("b", 100), image("c", 100)];
        let in_use = HashSet::from(["b".to_string()]);
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let last = |id: &str| match id {
            "a" => t(20),
            "c" => t(10),
            _ => t(0),
        };
        assert_eq!(pick(&images, &in_use, &last, 150), ["c", "a"]);
        assert_eq!(pick(&images, &in_use, &last, 50), ["c"]);
        assert!(pick(&images, &in_use, &last, 0).is_empty());
        assert!(usage_percent(Path::new("/")).is_some_and(|p| p <= 100));
    }
}
