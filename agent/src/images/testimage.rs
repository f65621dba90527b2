//! The busybox test image, built in-process from a static busybox (Debian's
//! busybox-static) so `skiff lab up` can give every node one without the
//! source tree: one layer with /bin/busybox and a symlink per applet,
//! /etc/passwd and /etc/group (root, nobody), /root and /tmp (1777); config
//! Cmd ["sh"] and the usual PATH; written as an OCI image layout tar. The
//! same image as `scripts/busybox-image`, which stays as the independent
//! producer (GNU tar, gzip) the importer's tests check against.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::digest::of_bytes;

const EPOCH: &str = "1970-01-01T00:00:00Z";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes the image named `name` (e.g. `localhost/busybox:latest`) built
/// from `busybox` to `out`; returns the image id (its config's digest).
pub fn write_busybox_image(busybox: &Path, name: &str, out: &Path) -> Result<String> {
    let binary = std::fs::read(busybox)
        .with_context(|| format!("{}: install busybox-static", busybox.display()))?;
    // A dynamically linked busybox names its loader; a container has no libc.
    if binary.windows(8).any(|w| w == b"/ld-linu") {
        bail!(
            "{} is dynamically linked; a container needs a static one (busybox-static)",
            busybox.display()
        );
    }
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .split_whitespace()
        .filter(|a| *a != "busybox")
        .map(str::to_string)
        .collect();
    applets.sort();

    let layer = layer(&binary, &applets)?;
    let diff_id = of_bytes(&layer);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer)?;
    let layer_gz = gz.finish()?;
    let config = serde_json::to_vec(&json!({
        "architecture": arch(), "os": "linux", "created": EPOCH,
        "config": {"Env": [PATH], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "skiff images build-busybox"}],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": of_bytes(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": of_bytes(&layer_gz), "size": layer_gz.len()}],
    }))?;
    // OCI's ref.name is the tag; containerd's annotation carries the name.
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": of_bytes(&manifest), "size": manifest.len(),
            "platform": {"architecture": arch(), "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": tag}}],
    }))?;

    let mut files: Vec<(String, &[u8])> = vec![
        ("index.json".into(), &index),
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
    ];
    for blob in [&config, &manifest, &layer_gz] {
        let digest = of_bytes(blob);
        let hex = digest.trim_start_matches("sha256:").to_string();
        files.push((format!("blobs/sha256/{hex}"), blob));
    }
    files.sort();
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, data) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, path, data)?;
    }
    let bytes = tar.into_inner()?;
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, out)?;
    Ok(of_bytes(&config))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// The layer: entries in name order, fixed times and owners.
fn layer(binary: &[u8], applets: &[String]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, path, std::io::empty())
    };
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        tar.append_data(&mut h, path, data)
    };
    dir(&mut tar, "./", 0o755)?;
    dir(&mut tar, "./bin/", 0o755)?;
    let mut bin: Vec<&str> = applets.iter().map(String::as_str).collect();
    bin.push("busybox");
    bin.sort();
    for name in bin {
        if name == "busybox" {
            file(&mut tar, "./bin/busybox", 0o755, binary)?;
        } else {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            tar.append_link(&mut h, format!("./bin/{name}"), "busybox")?;
        }
    }
    dir(&mut tar, "./etc/", 0o755)?;
    file(
        &mut tar,
        "./etc/group",
        0o644,
        b"root:x:0:\nnobody:x:65534:\n",
    )?;
    file(
        &mut tar,
        "./etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    dir(&mut tar, "./root/", 0o700)?;
    dir(&mut tar, "./tmp/", 0o1777)?;
    Ok(tar.into_inner()?)
}
