//! Unpacking one layer tarball into a directory that overlayfs will use as a
//! lowerdir: OCI whiteouts become overlay whiteouts (`.wh.x` → a 0/0
//! character device `x`; `.wh..wh..opq` → `trusted.overlay.opaque=y` on the
//! directory), and no entry may write outside the directory: absolute paths,
//! `..`, paths through a symlink and hard links to outside are refused.
//! Modes, ownership, symlinks, devices, xattrs and mtimes are kept.
//!
//! Blocking: callers on the async runtime use `spawn_blocking`.

use std::ffi::{CString, OsStr};
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;
use tar::EntryType;

use super::error::{ImageError, IoContext};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// aufs bookkeeping (`.wh..wh.plnk`, …) that some old layers carry.
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the (uncompressed) layer tar from `reader` into `root`, an
/// existing directory, then reads the stream to its end so a hashing reader
/// underneath sees every byte.
pub fn unpack_layer<R: Read>(reader: R, root: &Path) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(reader);
    let tar_err = |source| ImageError::Io {
        path: root.to_path_buf(),
        source,
    };
    // Directory mtimes are set last: creating entries inside changes them.
    let mut dir_times: Vec<(PathBuf, FileTime)> = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        unpack_entry(&mut entry, root, &mut dir_times)?;
    }
    for (dir, mtime) in dir_times.iter().rev() {
        filetime::set_symlink_file_times(dir, *mtime, *mtime).at(dir)?;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(tar_err)?;
    Ok(())
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    dir_times: &mut Vec<(PathBuf, FileTime)>,
) -> Result<(), ImageError> {
    let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let unsafe_entry = |reason: String| ImageError::UnsafeEntry {
        entry: shown.clone(),
        reason,
    };
    let path = entry.path().map_err(|e| unsafe_entry(e.to_string()))?;
    let Some(rel) = confined(&path).map_err(&unsafe_entry)? else {
        return Ok(()); // the layer's root itself ("./")
    };
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    ) {
        return Ok(());
    }
    let name = rel.file_name().unwrap_or_default().to_os_string();
    let parent =
        make_parents(root, rel.parent().unwrap_or(Path::new(""))).map_err(|e| match e {
            Walk::Unsafe(reason) => unsafe_entry(reason),
            Walk::Err(e) => e,
        })?;
    let header = Meta::of(entry.header()).map_err(|e| unsafe_entry(e.to_string()))?;

    let name_str = name.to_string_lossy();
    if name_str == WHITEOUT_OPAQUE {
        return set_xattr(&parent, OVERLAY_OPAQUE_XATTR, b"y");
    }
    if name_str.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(());
    }
    if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(unsafe_entry("whiteout of nothing".into()));
        }
        let target = parent.join(OsStr::from_bytes(hidden));
        clear(&target, false)?;
        // Mode 0 as containerd makes them; overlayfs looks only at the type.
        mknod(&target, libc::S_IFCHR, 0, 0)?;
        header.own(&target)?;
        return header.times(&target);
    }

    let dest = parent.join(&name);
    clear(&dest, kind.is_dir())?;
    match kind {
        EntryType::Directory => {
            match fs::create_dir(&dest) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {} // merged
                r => r.at(&dest)?,
            }
            header.own(&dest)?;
            fs::set_permissions(&dest, Permissions::from_mode(header.mode)).at(&dest)?;
            set_xattrs(entry, &dest)?;
            dir_times.push((dest, header.mtime));
        }
        EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| unsafe_entry(e.to_string()))?
                .filter(|t| !t.as_os_str().is_empty())
                .ok_or_else(|| unsafe_entry("symlink without a target".into()))?;
            // The target is not checked: it is resolved inside the container,
            // and nothing here ever follows it.
            std::os::unix::fs::symlink(&target, &dest).at(&dest)?;
            header.own(&dest)?;
            set_xattrs(entry, &dest)?;
            header.times(&dest)?;
        }
        EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| unsafe_entry(e.to_string()))?
                .ok_or_else(|| unsafe_entry("hard link without a target".into()))?;
            let target_rel = confined(&target)
                .map_err(|r| unsafe_entry(format!("hard link target: {r}")))?
                .ok_or_else(|| unsafe_entry("hard link to the layer's root".into()))?;
            let source = existing_inside(root, &target_rel).map_err(|e| match e {
                Walk::Unsafe(reason) => unsafe_entry(format!("hard link target: {reason}")),
                Walk::Err(e) => e,
            })?;
            // linkat without AT_SYMLINK_FOLLOW: a link to a symlink is a link
            // to the symlink itself, never to what it points at.
            fs::hard_link(&source, &dest).at(&dest)?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let ty = match kind {
                EntryType::Char => libc::S_IFCHR,
                EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            let dev = |v: io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0);
            let (major, minor) = (
                dev(entry.header().device_major()),
                dev(entry.header().device_minor()),
            );
            mknod(&dest, ty, major, minor)?;
            header.own(&dest)?;
            fs::set_permissions(&dest, Permissions::from_mode(header.mode)).at(&dest)?;
            set_xattrs(entry, &dest)?;
            header.times(&dest)?;
        }
        // Regular files, and (as POSIX says) any type this code does not know.
        _ => {
            let xattrs = pax_xattrs(entry)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dest)
                .at(&dest)?;
            io::copy(entry, &mut f).at(&dest)?;
            // Owner before mode: chown clears set-user-ID bits.
            header.own_file(&f, &dest)?;
            f.set_permissions(Permissions::from_mode(header.mode))
                .at(&dest)?;
            apply_xattrs(&dest, xattrs)?;
            filetime::set_file_handle_times(&f, Some(header.mtime), Some(header.mtime))
                .at(&dest)?;
        }
    }
    Ok(())
}

/// The entry path as a relative path with only normal components; `None`
/// for the root. Absolute paths and `..` are refused rather than rewritten:
/// a layer that has them was not made by an image builder.
fn confined(path: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains \"..\"".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

enum Walk {
    Unsafe(String),
    Err(ImageError),
}

impl From<ImageError> for Walk {
    fn from(e: ImageError) -> Self {
        Walk::Err(e)
    }
}

/// Creates the missing directories of `rel` under `root` (0755, root-owned,
/// as containerd does) and refuses to walk through a symlink or a file.
fn make_parents(root: &Path, rel: &Path) -> Result<PathBuf, Walk> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Walk::Unsafe(format!(
                    "goes through the symlink {}",
                    shown_rel(root, &cur)
                )))
            }
            Ok(_) => {
                return Err(Walk::Unsafe(format!(
                    "{} is not a directory",
                    shown_rel(root, &cur)
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).at(&cur)?;
                fs::set_permissions(&cur, Permissions::from_mode(0o755)).at(&cur)?;
            }
            Err(e) => {
                return Err(Walk::Err(ImageError::Io {
                    path: cur,
                    source: e,
                }))
            }
        }
    }
    Ok(cur)
}

/// `rel` under `root`, which must exist, not be a directory, and be reached
/// through directories only.
fn existing_inside(root: &Path, rel: &Path) -> Result<PathBuf, Walk> {
    let mut cur = root.to_path_buf();
    let count = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        cur.push(c);
        let last = i + 1 == count;
        match fs::symlink_metadata(&cur) {
            Ok(m) if last && !m.is_dir() => {}
            Ok(m) if !last && m.is_dir() => {}
            Ok(_) if last => return Err(Walk::Unsafe("is a directory".into())),
            Ok(_) => {
                return Err(Walk::Unsafe(format!(
                    "goes through {}, not a directory",
                    shown_rel(root, &cur)
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Walk::Unsafe(format!(
                    "{} is not in this layer",
                    shown_rel(root, &cur)
                )))
            }
            Err(e) => {
                return Err(Walk::Err(ImageError::Io {
                    path: cur,
                    source: e,
                }))
            }
        }
    }
    Ok(cur)
}

fn shown_rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Removes what an earlier entry left at `path` (a later entry wins), except
/// a directory that a directory entry merges into.
fn clear(path: &Path, keep_dir: bool) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && keep_dir => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

/// The header fields applied to every kind of entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: FileTime,
}

impl Meta {
    fn of(h: &tar::Header) -> io::Result<Meta> {
        let id = |v: u64| {
            u32::try_from(v)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "uid/gid out of range"))
        };
        Ok(Meta {
            uid: id(h.uid()?)?,
            gid: id(h.gid()?)?,
            mode: h.mode()? & 0o7777,
            mtime: FileTime::from_unix_time(i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0),
        })
    }

    /// lchown; a non-root caller (unit tests) keeps its own ids.
    fn own(&self, path: &Path) -> Result<(), ImageError> {
        match std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !is_root() => Ok(()),
            r => r.at(path),
        }
    }

    fn own_file(&self, f: &fs::File, path: &Path) -> Result<(), ImageError> {
        match std::os::unix::fs::fchown(f, Some(self.uid), Some(self.gid)) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !is_root() => Ok(()),
            r => r.at(path),
        }
    }

    fn times(&self, path: &Path) -> Result<(), ImageError> {
        filetime::set_symlink_file_times(path, self.mtime, self.mtime).at(path)
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn c_path(path: &Path) -> Result<CString, ImageError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ImageError::UnsafeEntry {
        entry: path.display().to_string(),
        reason: "NUL byte in path".into(),
    })
}

fn mknod(path: &Path, ty: libc::mode_t, major: u32, minor: u32) -> Result<(), ImageError> {
    let c = c_path(path)?;
    // SAFETY: a valid NUL-terminated path; mknod does not keep the pointer.
    let rc = unsafe { libc::mknod(c.as_ptr(), ty, libc::makedev(major, minor)) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        let e = if e.kind() == io::ErrorKind::PermissionDenied {
            io::Error::new(
                e.kind(),
                format!("{e} (device nodes and whiteouts need root)"),
            )
        } else {
            e
        };
        return Err(e).at(path);
    }
    Ok(())
}

/// lsetxattr: never through a symlink.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), ImageError> {
    let c = c_path(path)?;
    let n = CString::new(name).map_err(|_| ImageError::UnsafeEntry {
        entry: path.display().to_string(),
        reason: format!("xattr name {name:?} has a NUL byte"),
    })?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).at(path);
    }
    Ok(())
}

/// Extended attributes from PAX `SCHILY.xattr.*` records (file capabilities
/// such as ping's). Overlay's own `trusted.overlay.*` are dropped: only the
/// whiteout conversion may set those, or a layer could redirect lookups.
fn pax_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
    let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let bad = |e: io::Error| ImageError::UnsafeEntry {
        entry: shown.clone(),
        reason: format!("PAX header: {e}"),
    };
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(bad)? {
        for ext in exts {
            let ext = ext.map_err(bad)?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if !name.starts_with("trusted.overlay.") {
                    out.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

/// Sets the entry's xattrs; a file system without xattr support loses them
/// with a warning rather than failing the image.
fn set_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<(), ImageError> {
    apply_xattrs(path, pax_xattrs(entry)?)
}

fn apply_xattrs(path: &Path, xattrs: Vec<(String, Vec<u8>)>) -> Result<(), ImageError> {
    for (k, v) in xattrs {
        match set_xattr(path, &k, &v) {
            Err(ImageError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
            {
                tracing::warn!(path = %path.display(), xattr = %k, "file system does not support this xattr; dropped");
            }
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::testutil::{is_root, Tar, TempDir, MTIME};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn unpack(tar: Vec<u8>) -> (TempDir, Result<(), ImageError>) {
        let dir = TempDir::new("unpack");
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        let r = unpack_layer(&tar[..], &root);
        (dir, r)
    }

    fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let c = c_path(path).unwrap();
        let n = CString::new(name).unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: valid strings and a buffer of the given length.
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (len >= 0).then(|| buf[..len as usize].to_vec())
    }

    #[test]
    fn files_dirs_links_modes_and_times() {
        let tar = Tar::default()
            .dir("./", 0o755)
            .dir("./bin", 0o755)
            .file("./bin/busybox", 0o4755, b"ELF")
            .symlink("./bin/sh", "busybox")
            .hardlink("./bin/ls", "bin/busybox")
            .dir("./tmp", 0o1777)
            .file("etc/deep/file", 0o600, b"implicit parents")
            .symlink("abs", "/etc/passwd")
            .finish();
        let (dir, r) = unpack(tar);
        r.unwrap();
        let root = dir.path().join("rootfs");
        let bb = fs::symlink_metadata(root.join("bin/busybox")).unwrap();
        assert_eq!(bb.mode() & 0o7777, 0o4755);
        assert_eq!(bb.mtime() as u64, MTIME);
        assert_eq!(bb.nlink(), 2);
        assert_eq!(fs::read(root.join("bin/ls")).unwrap(), b"ELF");
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::read_link(root.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        let tmp = fs::metadata(root.join("tmp")).unwrap();
        assert_eq!(tmp.mode() & 0o7777, 0o1777);
        // Directory times survive the entries created inside them later.
        assert_eq!(
            fs::metadata(root.join("bin")).unwrap().mtime() as u64,
            MTIME
        );
        let deep = fs::metadata(root.join("etc/deep")).unwrap();
        assert_eq!(deep.mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read(root.join("etc/deep/file")).unwrap(),
            b"implicit parents"
        );
    }

    #[test]
    fn ownership_is_kept() {
        if !is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let tar = Tar::default()
            .owned(EntryType::Directory, "home", "", 0o750, 1000, b"")
            .owned(EntryType::Regular, "home/f", "", 0o640, 1000, b"x")
            .owned(EntryType::Symlink, "home/l", "f", 0o777, 1001, b"")
            .finish();
        let (dir, r) = unpack(tar);
        r.unwrap();
        let root = dir.path().join("rootfs");
        assert_eq!(fs::metadata(root.join("home")).unwrap().uid(), 1000);
        assert_eq!(fs::metadata(root.join("home/f")).unwrap().gid(), 1000);
        assert_eq!(
            fs::symlink_metadata(root.join("home/l")).unwrap().uid(),
            1001
        );
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !is_root() {
            eprintln!("skipped: whiteout device nodes and trusted.* xattrs need root");
            return;
        }
        let tar = Tar::default()
            .dir("etc", 0o755)
            .file("etc/.wh.motd", 0o644, b"")
            .dir("var/cache", 0o755)
            .file("var/cache/.wh..wh..opq", 0o644, b"")
            .file("var/cache/new", 0o644, b"kept")
            .file(".wh..wh.plnk", 0o644, b"")
            .finish();
        let (dir, r) = unpack(tar);
        r.unwrap();
        let root = dir.path().join("rootfs");
        let wh = fs::symlink_metadata(root.join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!root.join("etc/.wh.motd").exists());
        assert_eq!(
            get_xattr(&root.join("var/cache"), OVERLAY_OPAQUE_XATTR).as_deref(),
            Some(&b"y"[..])
        );
        assert!(!root.join("var/cache/.wh..wh..opq").exists());
        assert_eq!(fs::read(root.join("var/cache/new")).unwrap(), b"kept");
        assert!(!root.join(".wh..wh.plnk").exists());
    }

    #[test]
    fn later_entries_replace_earlier_ones_without_following_symlinks() {
        let dir = TempDir::new("replace");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let tar = Tar::default()
            .symlink("x", outside.to_str().unwrap())
            .dir("x", 0o700) // replaces the symlink; must not chmod `outside`
            .file("f", 0o644, b"old")
            .symlink("f", "x")
            .finish();
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        unpack_layer(&tar[..], &root).unwrap();
        assert!(fs::symlink_metadata(root.join("x")).unwrap().is_dir());
        assert_ne!(fs::metadata(&outside).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::read_link(root.join("f")).unwrap(), Path::new("x"));
    }

    #[test]
    fn entries_escaping_the_root_are_refused() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "parent dir",
                Tar::default()
                    .raw(EntryType::Regular, "../evil", "", b"x")
                    .finish(),
            ),
            (
                "nested parent dir",
                Tar::default()
                    .raw(EntryType::Regular, "a/../../evil", "", b"x")
                    .finish(),
            ),
            (
                "absolute",
                Tar::default()
                    .raw(EntryType::Regular, "/evil", "", b"x")
                    .finish(),
            ),
            (
                "through a symlink",
                Tar::default()
                    .symlink("link", "..")
                    .file("link/evil", 0o644, b"x")
                    .finish(),
            ),
            (
                "hard link outside",
                Tar::default().hardlink("h", "../evil").finish(),
            ),
            (
                "hard link through a symlink",
                Tar::default()
                    .symlink("link", "..")
                    .hardlink("h", "link/evil")
                    .finish(),
            ),
            (
                "hard link to nothing",
                Tar::default().hardlink("h", "missing").finish(),
            ),
            (
                "whiteout through a symlink",
                Tar::default()
                    .symlink("link", "..")
                    .file("link/.wh.evil", 0o644, b"")
                    .finish(),
            ),
        ];
        for (what, tar) in cases {
            let dir = TempDir::new("escape");
            let root = dir.path().join("rootfs");
            fs::create_dir(&root).unwrap();
            // Something a hard link could grab if it were allowed to.
            fs::write(dir.path().join("evil"), b"outside").unwrap();
            let err = unpack_layer(&tar[..], &root).expect_err(what);
            assert!(
                matches!(err, ImageError::UnsafeEntry { .. }),
                "{what}: {err}"
            );
            assert_eq!(
                fs::read(dir.path().join("evil")).unwrap(),
                b"outside",
                "{what}"
            );
            assert!(!root.join("h").exists(), "{what}");
        }
    }
}
