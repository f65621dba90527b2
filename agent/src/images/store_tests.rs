//! Tests of the store through its public API: importing OCI-layout and
//! docker-save archives built here, resolving by every kind of name,
//! removal and collection, the pull seam (put_blob + tag), concurrency, and
//! the image `scripts/busybox-image` writes.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::digest::of_bytes;
use super::oci::host_platform;
use super::testutil::*;
use super::{ImageError, ImageStore};

fn arch() -> String {
    host_platform().architecture
}

fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    files
        .iter()
        .fold(Tar::default(), |t, (p, c)| t.file(p, 0o755, c.as_bytes()))
        .finish()
}

fn store(dir: &TempDir) -> ImageStore {
    ImageStore::open(&dir.path().join("content")).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn oci_layout_import_resolves_by_name_id_and_digest() {
    let dir = TempDir::new("oci");
    let s = store(&dir);
    let l1 = layer(&[("bin/sh", "shell")]);
    let l2 = layer(&[("etc/hostname", "box")]);
    let img = TestImage::new(vec![(gzip(&l1), l1), (zstd(&l2), l2)], &["sh"], &arch());
    let archive = write(
        dir.path(),
        "img.tar",
        &oci_archive(
            vec![named_entry(&img, Some("localhost/test:1"))],
            &img.blobs(),
        ),
    );
    assert_eq!(s.import_tar(&archive).unwrap(), vec!["localhost/test:1"]);

    let got = s.resolve("localhost/test:1").unwrap().expect("imported");
    assert_eq!(got.id, img.id());
    assert_eq!(got.digest, img.digest());
    assert_eq!(got.names, vec!["localhost/test:1"]);
    assert_eq!(got.config.cmd, vec!["sh"]);
    assert!(got.config.entrypoint.is_empty());
    assert_eq!(got.config.env, vec!["PATH=/bin"]);
    assert_eq!(got.config.working_dir.as_deref(), Some("/work"));
    assert_eq!(got.config.user.as_deref(), Some("65534"));
    assert_eq!(got.layers.len(), 2);
    assert_eq!(fs::read(got.layers[0].join("bin/sh")).unwrap(), b"shell");
    assert_eq!(
        fs::read(got.layers[1].join("etc/hostname")).unwrap(),
        b"box"
    );
    let blob_bytes: u64 = img.layers.iter().map(|(b, _)| b.len() as u64).sum();
    assert_eq!(got.size, img.config.len() as u64 + blob_bytes);

    let hex = &img.id()["sha256:".len()..];
    for q in [
        img.id(),
        hex[..12].to_string(),
        format!("localhost/test@{}", img.digest()),
    ] {
        let r = s.resolve(&q).unwrap();
        assert_eq!(r.map(|i| i.id), Some(img.id()), "{q}");
    }
    assert!(s.resolve("localhost/test:2").unwrap().is_none());
    assert!(s.resolve("busybox").unwrap().is_none());
    assert!(s.resolve("Not A Name").is_err());

    // Importing again changes nothing.
    s.import_tar(&archive).unwrap();
    let list = s.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].names, vec!["localhost/test:1"]);
    assert_eq!(list[0].id, img.id());
    assert!(entries(&s.root().join("tmp")).is_empty());
}

#[test]
fn docker_save_import_with_tags_and_linked_layers() {
    let dir = TempDir::new("docker");
    let s = store(&dir);
    let l1 = layer(&[("bin/sh", "shell")]);
    let l2 = layer(&[("etc/motd", "hi")]);
    let img = TestImage::new(
        vec![(l1.clone(), l1.clone()), (l2.clone(), l2), (l1.clone(), l1)],
        &["sh", "-c", "true"],
        &arch(),
    );
    let archive = write(
        dir.path(),
        "save.tar",
        &gzip(&docker_archive(
            &img,
            &["busybox:latest", "localhost/other:v1"],
        )),
    );
    assert_eq!(
        s.import_tar(&archive).unwrap(),
        vec!["docker.io/library/busybox:latest", "localhost/other:v1"]
    );
    let got = s.resolve("busybox").unwrap().expect("imported");
    assert_eq!(got.id, img.id());
    assert_eq!(
        got.names,
        vec!["docker.io/library/busybox:latest", "localhost/other:v1"]
    );
    assert_eq!(got.config.cmd, vec!["sh", "-c", "true"]);
    assert_eq!(got.layers.len(), 3);
    assert_eq!(got.layers[0], got.layers[2]);
    assert_eq!(fs::read(got.layers[1].join("etc/motd")).unwrap(), b"hi");
    // The manifest the store wrote for the archive is a stored blob.
    assert!(s.has_blob(&got.digest));
    // Two layer directories: the repeated layer is unpacked once.
    assert_eq!(entries(&s.root().join("layers")).len(), 2);
}

#[test]
fn remove_deletes_what_no_image_references() {
    let dir = TempDir::new("remove");
    let s = store(&dir);
    let shared = layer(&[("bin/sh", "shell")]);
    let own = layer(&[("app", "b")]);
    let a = TestImage::new(vec![(gzip(&shared), shared.clone())], &["a"], &arch());
    let b = TestImage::new(
        vec![(gzip(&shared), shared), (gzip(&own), own)],
        &["b"],
        &arch(),
    );
    let mut blobs = a.blobs();
    blobs.extend(b.blobs());
    let archive = write(
        dir.path(),
        "two.tar",
        &oci_archive(
            vec![
                named_entry(&a, Some("localhost/a:1")),
                named_entry(&b, Some("localhost/b:1")),
            ],
            &blobs,
        ),
    );
    s.import_tar(&archive).unwrap();
    s.tag("localhost/b:also", &b.digest()).unwrap();
    assert_eq!(entries(&s.root().join("layers")).len(), 2);

    s.remove("localhost/a:1").unwrap();
    assert!(s.resolve("localhost/a:1").unwrap().is_none());
    assert!(!s.has_blob(&a.digest()));
    assert!(!s.has_blob(&a.id()));
    // The shared layer stays for b.
    let got = s.resolve("localhost/b:1").unwrap().expect("b stays");
    assert!(got.layers[0].join("bin/sh").exists());
    assert!(matches!(
        s.remove("localhost/a:1"),
        Err(ImageError::NotFound(_))
    ));

    // One name of two: the image stays.
    s.remove("localhost/b:also").unwrap();
    assert!(s.resolve(&b.id()).unwrap().is_some());
    // By ID: every name goes, and with them every blob and layer.
    s.remove(&b.id()).unwrap();
    assert!(s.list().unwrap().is_empty());
    assert!(entries(&s.root().join("blobs/sha256")).is_empty());
    assert!(entries(&s.root().join("layers")).is_empty());
}

#[test]
fn pull_seam_put_blob_then_tag() {
    let dir = TempDir::new("pull");
    let s = store(&dir);
    let l = layer(&[("hello", "world")]);
    let img = TestImage::new(vec![(gzip(&l), l)], &["hello"], &arch());

    let wrong = s.put_blob(&img.id(), &b"not the config"[..]);
    assert!(matches!(wrong, Err(ImageError::DigestMismatch { .. })));
    assert!(!s.has_blob(&img.id()));
    // Tagging before the blobs are there says which one is missing.
    assert!(matches!(
        s.tag("localhost/pulled:1", &img.digest()),
        Err(ImageError::MissingBlob(_))
    ));

    let _lease = s.lease().unwrap();
    for blob in img.blobs() {
        let size = s.put_blob(&of_bytes(&blob), &blob[..]).unwrap();
        assert_eq!(size, blob.len() as u64);
    }
    assert_eq!(
        s.tag("localhost/pulled:1", &img.digest()).unwrap(),
        "localhost/pulled:1"
    );
    let got = s.resolve("localhost/pulled:1").unwrap().unwrap();
    assert_eq!(fs::read(got.layers[0].join("hello")).unwrap(), b"world");
}

#[test]
fn layer_not_matching_its_diff_id_is_refused() {
    let dir = TempDir::new("diffid");
    let s = store(&dir);
    let real = layer(&[("a", "1")]);
    let claimed = layer(&[("a", "2")]);
    // The config claims `claimed`'s diff ID for a blob holding `real`.
    let img = TestImage::new(vec![(gzip(&real), claimed)], &["x"], &arch());
    let archive = write(
        dir.path(),
        "bad.tar",
        &oci_archive(
            vec![named_entry(&img, Some("localhost/bad:1"))],
            &img.blobs(),
        ),
    );
    let err = s.import_tar(&archive).unwrap_err();
    assert!(
        matches!(&err, ImageError::Layer { source, .. } if matches!(**source, ImageError::DigestMismatch { .. })),
        "{err}"
    );
    assert!(s.resolve("localhost/bad:1").unwrap().is_none());
    assert!(entries(&s.root().join("layers")).is_empty());
    assert!(entries(&s.root().join("tmp")).is_empty());
}

#[test]
fn blob_not_matching_its_name_is_refused() {
    let dir = TempDir::new("blobname");
    let s = store(&dir);
    let fake = format!("blobs/sha256/{}", "0".repeat(64));
    let archive = write(
        dir.path(),
        "bad.tar",
        &Tar::default()
            .file("oci-layout", 0o644, b"{}")
            .file(&fake, 0o644, b"not zeros")
            .finish(),
    );
    assert!(matches!(
        s.import_tar(&archive),
        Err(ImageError::DigestMismatch { .. })
    ));
    assert!(entries(&s.root().join("blobs/sha256")).is_empty());
}

#[test]
fn index_import_picks_this_platform() {
    let dir = TempDir::new("index");
    let s = store(&dir);
    let mine = layer(&[("arch", "mine")]);
    let theirs = layer(&[("arch", "theirs")]);
    let other_arch = if arch() == "s390x" {
        "riscv64"
    } else {
        "s390x"
    };
    let host = TestImage::new(vec![(gzip(&mine), mine)], &["x"], &arch());
    let other = TestImage::new(vec![(gzip(&theirs), theirs)], &["x"], other_arch);
    let platform_entry = |img: &TestImage, arch: &str| {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.digest(),
            "size": img.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [platform_entry(&other, other_arch), platform_entry(&host, &arch())],
    }))
    .unwrap();
    // The archive carries the other platform's manifest but not its layer.
    let mut blobs = host.blobs();
    blobs.push(index.clone());
    blobs.push(other.manifest.clone());
    let entry = json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": of_bytes(&index),
        "size": index.len(),
        "annotations": {"io.containerd.image.name": "localhost/multi:1"},
    });
    let archive = write(dir.path(), "multi.tar", &oci_archive(vec![entry], &blobs));
    s.import_tar(&archive).unwrap();
    let got = s.resolve("localhost/multi:1").unwrap().unwrap();
    assert_eq!(got.id, host.id());
    assert_eq!(got.digest, of_bytes(&index));
    assert_eq!(fs::read(got.layers[0].join("arch")).unwrap(), b"mine");
    // Collection keeps the index and what it reaches.
    assert_eq!(s.collect_garbage().unwrap(), (0, 0));
    assert!(s.resolve("localhost/multi:1").unwrap().is_some());
}

#[test]
fn unnamed_image_is_kept_by_id() {
    let dir = TempDir::new("dangling");
    let s = store(&dir);
    let l = layer(&[("f", "x")]);
    let img = TestImage::new(vec![(gzip(&l), l)], &["x"], &arch());
    let archive = write(
        dir.path(),
        "anon.tar",
        &oci_archive(vec![named_entry(&img, None)], &img.blobs()),
    );
    assert_eq!(s.import_tar(&archive).unwrap(), vec![img.id()]);
    let list = s.list().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].names.is_empty());
    // Naming it replaces the dangling entry; untagging the name drops it.
    s.tag("localhost/named:1", &img.digest()).unwrap();
    assert_eq!(s.list().unwrap()[0].names, vec!["localhost/named:1"]);
    s.remove("localhost/named:1").unwrap();
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn concurrent_imports_of_shared_layers() {
    let dir = TempDir::new("concurrent");
    let s = store(&dir);
    let shared = layer(&[("bin/sh", "shell"), ("etc/passwd", "root")]);
    let archives: Vec<PathBuf> = (0..4)
        .map(|i| {
            let own = layer(&[("id", &i.to_string())]);
            let img = TestImage::new(
                vec![(gzip(&shared), shared.clone()), (gzip(&own), own)],
                &["x"],
                &arch(),
            );
            let name = format!("localhost/c{i}:1");
            write(
                dir.path(),
                &format!("c{i}.tar"),
                &oci_archive(vec![named_entry(&img, Some(&name))], &img.blobs()),
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for a in &archives {
            // Each archive twice, so equal blobs and layers race too.
            for _ in 0..2 {
                let s = s.clone();
                scope.spawn(move || s.import_tar(a).unwrap());
            }
        }
    });
    assert_eq!(s.list().unwrap().len(), 4);
    assert_eq!(entries(&s.root().join("layers")).len(), 5);
    for i in 0..4 {
        let got = s.resolve(&format!("localhost/c{i}:1")).unwrap().unwrap();
        assert_eq!(
            fs::read(got.layers[1].join("id")).unwrap(),
            i.to_string().as_bytes()
        );
        assert_eq!(fs::read(got.layers[0].join("etc/passwd")).unwrap(), b"root");
    }
    assert!(entries(&s.root().join("tmp")).is_empty());
}

#[test]
fn archives_that_are_not_images_are_refused() {
    let dir = TempDir::new("notimage");
    let s = store(&dir);
    let archive = write(
        dir.path(),
        "x.tar",
        &Tar::default().file("hello", 0o644, b"x").finish(),
    );
    assert!(matches!(
        s.import_tar(&archive),
        Err(ImageError::UnsupportedArchive(_))
    ));
}

/// `scripts/busybox-image` writes an image that imports, in both formats.
#[test]
fn busybox_script_image_imports() {
    // A dynamically linked busybox names its loader; the script refuses it.
    let static_busybox =
        fs::read("/bin/busybox").is_ok_and(|b| !b.windows(9).any(|w| w == b"/ld-linux"));
    if !static_busybox {
        eprintln!("skipped: no static /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let dir = TempDir::new("busybox");
    for format in ["oci", "docker"] {
        let out = dir.path().join(format!("busybox-{format}.tar"));
        let status = std::process::Command::new(&script)
            .arg(&out)
            .args(["--format", format])
            .status()
            .unwrap();
        assert!(status.success(), "{} --format {format}", script.display());
        let s = ImageStore::open(&dir.path().join(format!("content-{format}"))).unwrap();
        assert_eq!(
            s.import_tar(&out).unwrap(),
            vec!["localhost/busybox:latest"]
        );
        let img = s.resolve("localhost/busybox").unwrap().unwrap();
        assert_eq!(img.config.cmd, vec!["sh"], "{format}");
        assert_eq!(img.layers.len(), 1);
        let sh = img.layers[0].join("bin/sh");
        assert!(fs::symlink_metadata(&sh).unwrap().file_type().is_symlink());
        assert!(img.layers[0].join("bin/busybox").is_file());
    }
}

/// The in-process builder (`skiff images build-busybox`, `skiff lab up`)
/// writes the same image: it imports under its name, with its tag, Cmd,
/// applets, accounts and a sticky /tmp.
#[test]
fn built_busybox_image_imports() {
    let static_busybox =
        fs::read("/bin/busybox").is_ok_and(|b| !b.windows(9).any(|w| w == b"/ld-linux"));
    if !static_busybox {
        eprintln!("skipped: no static /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let dir = TempDir::new("busybox-built");
    let out = dir.path().join("busybox.tar");
    let id = super::testimage::write_busybox_image(
        Path::new("/bin/busybox"),
        "localhost/busybox:v2",
        &out,
    )
    .unwrap();
    let s = ImageStore::open(&dir.path().join("content")).unwrap();
    assert_eq!(s.import_tar(&out).unwrap(), vec!["localhost/busybox:v2"]);
    let img = s.resolve("localhost/busybox:v2").unwrap().unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.config.cmd, vec!["sh"]);
    let root = &img.layers[0];
    assert!(fs::symlink_metadata(root.join("bin/wget"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    use std::os::unix::fs::PermissionsExt;
    let tmp = fs::metadata(root.join("tmp")).unwrap().permissions().mode();
    assert_eq!(tmp & 0o7777, 0o1777);
    // Deterministic: the same busybox gives the same image.
    let again = dir.path().join("again.tar");
    let id2 = super::testimage::write_busybox_image(
        Path::new("/bin/busybox"),
        "localhost/busybox:v2",
        &again,
    )
    .unwrap();
    assert_eq!(id, id2);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&again).unwrap());
}

/// The layers of an image, stacked by overlayfs as the runtime will stack
/// them, show what the image means: whiteouts hide, opaque dirs replace.
#[test]
fn layers_stack_as_overlay_lowerdirs() {
    if !is_root() {
        eprintln!("skipped: whiteouts and overlay mounts need root");
        return;
    }
    let dir = TempDir::new("overlay");
    let s = store(&dir);
    let base = Tar::default()
        .file("etc/motd", 0o644, b"hello")
        .file("etc/keep", 0o644, b"kept")
        .file("var/cache/old", 0o644, b"old")
        .finish();
    let top = Tar::default()
        .dir("etc", 0o755)
        .file("etc/.wh.motd", 0o644, b"")
        .dir("var/cache", 0o755)
        .file("var/cache/.wh..wh..opq", 0o644, b"")
        .file("var/cache/new", 0o644, b"new")
        .finish();
    let img = TestImage::new(
        vec![(gzip(&base), base), (gzip(&top), top)],
        &["sh"],
        &arch(),
    );
    let archive = write(
        dir.path(),
        "img.tar",
        &oci_archive(
            vec![named_entry(&img, Some("localhost/ov:1"))],
            &img.blobs(),
        ),
    );
    s.import_tar(&archive).unwrap();
    let got = s.resolve("localhost/ov:1").unwrap().unwrap();

    // overlayfs wants the top layer first.
    let lower: Vec<String> = got
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let target = dir.path().join("merged");
    fs::create_dir(&target).unwrap();
    let Some(_mount) = Mount::overlay(&lower.join(":"), &target) else {
        eprintln!("skipped: cannot mount overlayfs here");
        return;
    };
    assert!(!target.join("etc/motd").exists());
    assert_eq!(fs::read(target.join("etc/keep")).unwrap(), b"kept");
    assert_eq!(entries(&target.join("var/cache")), vec!["new"]);
}

/// A read-only overlay mount, unmounted when dropped (also when a test fails).
struct Mount(std::ffi::CString);

impl Mount {
    fn overlay(lowerdirs: &str, target: &Path) -> Option<Mount> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(target.as_os_str().as_bytes()).ok()?;
        let opts = CString::new(format!("lowerdir={lowerdirs}")).ok()?;
        let overlay = CString::new("overlay").ok()?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                overlay.as_ptr(),
                target.as_ptr(),
                overlay.as_ptr(),
                libc::MS_RDONLY,
                opts.as_ptr().cast(),
            )
        };
        (rc == 0).then_some(Mount(target))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}
