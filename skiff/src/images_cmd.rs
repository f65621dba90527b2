//! `skiff images`: import, list and remove the images in a node's image
//! store (`<data-dir>/agent/content`), as `ctr images import`, `crictl
//! images` and `crictl rmi` do for containerd. Works beside a running agent:
//! the store locks itself.

use std::path::PathBuf;

use anyhow::{Context, Result};
use skiff_agent::images::{ImageStore, Reference};

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Folder for state; the image store is <data-dir>/agent/content.
    #[arg(
        long,
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(clap::Subcommand)]
enum ImagesCommand {
    /// Build the busybox test image (an OCI image layout tar) from a static
    /// busybox; `skiff lab up` gives every node one.
    BuildBusybox {
        /// Where to write the tar.
        out: PathBuf,
        #[arg(long, default_value = DEFAULT_TEST_IMAGE)]
        name: String,
        /// The static busybox (Debian: busybox-static).
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
    },
    /// Import the images of OCI image layout or `docker save` tarballs (plain, gzip or zstd).
    Import {
        #[arg(required = true, value_name = "TAR")]
        tars: Vec<PathBuf>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Print image IDs only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images by name or ID; blobs and layers no other image uses are deleted.
    #[command(alias = "rmi")]
    Rm {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

pub async fn run(args: ImagesArgs) -> Result<()> {
    // The store blocks on the file system.
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

/// The test image's name, as tests and examples use it.
pub const DEFAULT_TEST_IMAGE: &str = "localhost/busybox:latest";

fn run_blocking(args: ImagesArgs) -> Result<()> {
    if let ImagesCommand::BuildBusybox { out, name, busybox } = &args.command {
        let id = skiff_agent::images::testimage::write_busybox_image(busybox, name, out)?;
        eprintln!("{}: {name}, image id {id}", out.display());
        return Ok(());
    }
    let root = args.data_dir.join("agent/content");
    let store = ImageStore::open(&root)
        .with_context(|| format!("opening the image store at {}", root.display()))?;
    match args.command {
        ImagesCommand::Import { tars } => {
            for tar in tars {
                let names = store
                    .import_tar(&tar)
                    .with_context(|| format!("importing {}", tar.display()))?;
                for name in names {
                    println!("imported {name}");
                }
            }
        }
        ImagesCommand::Ls { quiet } => {
            let images = store.list()?;
            if quiet {
                for image in images {
                    println!("{}", image.id);
                }
            } else {
                print!("{}", table(&images));
            }
        }
        ImagesCommand::BuildBusybox { .. } => unreachable!("handled above"),
        ImagesCommand::Rm { names } => {
            for name in names {
                // Its layers are running containers' lower dirs: refuse, as
                // `crictl rmi` does for an image a container uses.
                if let Some(image) = store.resolve(&name)? {
                    let dirs = skiff_agent::runtime::Dirs::new(&args.data_dir, PathBuf::new());
                    if let Some(c) = containers_using(&dirs.containers, &image.id) {
                        anyhow::bail!("image {name} is in use by container {c}");
                    }
                }
                store.remove(&name)?;
                println!("Deleted: {name}");
            }
        }
    }
    Ok(())
}

/// A container on this node (by id) whose image is `image_id`.
fn containers_using(containers: &std::path::Path, image_id: &str) -> Option<String> {
    std::fs::read_dir(containers).ok()?.flatten().find_map(|e| {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path().join("meta.json")).ok()?).ok()?;
        (meta["imageId"] == image_id).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// crictl's table: one row per name (`<none>` for an image without one).
fn table(images: &[skiff_agent::images::ImageSummary]) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for image in images {
        let id = image.id.trim_start_matches("sha256:");
        let id = id.get(..12).unwrap_or(id).to_string();
        let size = human_size(image.size);
        let mut named: Vec<(String, String)> = image
            .names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .map(|r| (r.name(), r.tag.clone().unwrap_or_else(|| "<none>".into())))
            .collect();
        if named.is_empty() {
            named.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in named {
            rows.push([repo, tag, id.clone(), size.clone()]);
        }
    }
    rows.sort();
    let header = ["IMAGE", "TAG", "IMAGE ID", "SIZE"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Decimal units with three significant digits, as crictl prints sizes
/// (`1.03MB`, `742kB`, `12B`).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_crictl_prints_them() {
        assert_eq!(human_size(12), "12B");
        assert_eq!(human_size(1_031_825), "1.03MB");
        assert_eq!(human_size(742_000), "742kB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size(2_000), "2kB");
    }

    #[test]
    fn table_rows_per_name() {
        let images = vec![skiff_agent::images::ImageSummary {
            id: format!("sha256:{}", "ab".repeat(32)),
            digest: String::new(),
            names: vec![
                "docker.io/library/busybox:latest".into(),
                "localhost/bb:1".into(),
            ],
            size: 1_031_825,
        }];
        let t = table(&images);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("IMAGE"));
        assert!(lines[1].starts_with("docker.io/library/busybox   latest   abababababab   1.03MB"));
        assert!(lines[2].starts_with("localhost/bb"));
    }
}
