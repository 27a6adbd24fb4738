//! Unpacking one layer tar stream into its own directory, treating the input
//! as hostile: no entry, hard link or parent symlink may reach outside the
//! destination, and sizes and counts are bounded.
//!
//! Whiteouts become overlayfs's form as they are met: `.wh.NAME` a 0:0
//! character device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque`
//! attribute on its directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, mknod};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

/// Upper bounds on what one layer may contain.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries in the archive.
    pub max_entries: u64,
    /// Bytes of file content in total.
    pub max_bytes: u64,
    /// Bytes of one entry's path.
    pub max_path: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_bytes: 64 << 30,
            max_path: 4096,
        }
    }
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries applied.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry's name or link target leaves the layer.
    #[error("entry {entry:?}: {why}")]
    Unsafe {
        /// The entry's name as in the archive.
        entry: String,
        /// What makes it unsafe.
        why: String,
    },
    /// The archive exceeds a limit.
    #[error("layer too large: {0}")]
    TooLarge(String),
    /// The stream is not a valid tar archive, or reading it failed.
    #[error("read layer: {0}")]
    Read(io::Error),
    /// Writing into the layer directory failed.
    #[error("write {path}: {source}")]
    Write {
        /// The path written.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn errno_err(path: &Path) -> impl FnOnce(nix::Error) -> UnpackError + '_ {
    move |e| UnpackError::Write {
        path: path.to_path_buf(),
        source: io::Error::from(e),
    }
}

/// The prefix of a whiteout file name.
const WHITEOUT: &str = ".wh.";
/// The name marking an opaque directory.
const OPAQUE: &str = ".wh..wh..opq";
/// The overlayfs attribute of an opaque directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Splits an archive path into its components, refusing `..` and absolute
/// names. `./` prefixes and repeated slashes are tolerated.
fn components(raw: &[u8], limits: &Limits) -> Result<Vec<Vec<u8>>, String> {
    if raw.len() > limits.max_path {
        return Err(format!("path longer than {} bytes", limits.max_path));
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    if raw.contains(&0) {
        return Err("NUL byte in path".into());
    }
    let mut parts = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path climbs out with \"..\"".into()),
            p => parts.push(p.to_vec()),
        }
    }
    Ok(parts)
}

/// Joins components onto `root`, checking that every parent below `root`
/// that exists is a real directory (not a symlink), and creating the missing
/// ones. Returns the full path of the last component.
fn prepare_parents(root: &Path, parts: &[Vec<u8>], entry: &str) -> Result<PathBuf, UnpackError> {
    let mut path = root.to_path_buf();
    let Some((last, parents)) = parts.split_last() else {
        return Ok(path);
    };
    for part in parents {
        path.push(OsStr::from_bytes(part));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::Unsafe {
                    entry: entry.to_string(),
                    why: format!(
                        "parent {:?} is a symbolic link",
                        path.strip_prefix(root).unwrap_or(&path)
                    ),
                });
            }
            Ok(_) => {
                // A file where a directory is needed: the later entry wins.
                fs::remove_file(&path).map_err(write_err(&path))?;
                mkdir(&path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir(&path)?,
            Err(e) => return Err(UnpackError::Write { path, source: e }),
        }
    }
    path.push(OsStr::from_bytes(last));
    Ok(path)
}

fn mkdir(path: &Path) -> Result<(), UnpackError> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(write_err(path))
}

/// Removes whatever is at `path` unless it is a directory and `keep_dir`.
fn clear(path: &Path, keep_dir: bool) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if !keep_dir {
                fs::remove_dir_all(path).map_err(write_err(path))?;
            }
        }
        Ok(_) => fs::remove_file(path).map_err(write_err(path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(path)(e)),
    }
    Ok(())
}

/// Metadata applied to an entry once its content is in place.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn apply_meta(path: &Path, meta: &Meta, symlink: bool) -> Result<(), UnpackError> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno_err(path))?;
    if !symlink {
        for (name, value) in &meta.xattrs {
            if let Err(e) = xattr::set(path, name, value) {
                // Hosts without SELinux refuse security.* labels: not fatal.
                if !name.starts_with("security.") {
                    return Err(write_err(path)(e));
                }
            }
        }
        // After chown, which clears set-id bits.
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode & 0o7777))
            .map_err(write_err(path))?;
    }
    let t = TimeSpec::new(meta.mtime, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(errno_err(path))
}

/// Unpacks the tar stream `reader` into `dest`, an existing empty directory.
pub fn unpack(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = Unpacked::default();
    // Directory metadata is applied last: adding children changes mtimes.
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut seen_dirs: HashMap<PathBuf, usize> = HashMap::new();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(UnpackError::TooLarge(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_entry = |why: String| UnpackError::Unsafe {
            entry: name.clone(),
            why,
        };
        let xattrs = xattrs_of(&mut entry)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let size = entry.size();
        if size > limits.max_bytes || stats.bytes + size > limits.max_bytes {
            return Err(UnpackError::TooLarge(format!(
                "entry {name:?} declares {size} bytes; the layer may hold {} in all",
                limits.max_bytes
            )));
        }
        let parts = components(&raw, limits).map_err(unsafe_entry)?;
        let Some(base) = parts.last().cloned() else {
            continue; // the root itself ("./")
        };
        let meta = Meta {
            mode: header.mode().map_err(UnpackError::Read)?,
            // Some writers leave owner fields blank: that means root.
            uid: u32::try_from(header.uid().unwrap_or(0)).unwrap_or(u32::MAX),
            gid: u32::try_from(header.gid().unwrap_or(0)).unwrap_or(u32::MAX),
            mtime: i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0),
            xattrs,
        };
        let path = prepare_parents(dest, &parts, &name)?;

        if base == OPAQUE.as_bytes() {
            let dir = path.parent().unwrap_or(dest);
            xattr::set(dir, OPAQUE_XATTR, b"y").map_err(write_err(dir))?;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT.as_bytes()) {
            if hidden.starts_with(WHITEOUT.as_bytes()) || hidden.is_empty() {
                continue; // aufs bookkeeping (.wh..wh.plnk and the like)
            }
            let target = path.with_file_name(OsStr::from_bytes(hidden));
            clear(&target, false)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(errno_err(&target))?;
            continue;
        }

        match kind {
            tar::EntryType::Directory => {
                clear(&path, true)?;
                if !path.exists() {
                    mkdir(&path)?;
                }
                if let Some(i) = seen_dirs.get(&path) {
                    dirs[*i].1 = meta;
                } else {
                    seen_dirs.insert(path.clone(), dirs.len());
                    dirs.push((path, meta));
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&path, false)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(write_err(&path))?;
                let copied =
                    io::copy(&mut (&mut entry).take(size), &mut file).map_err(UnpackError::Read)?;
                if copied != size {
                    return Err(UnpackError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry {name:?}: {copied} of {size} bytes"),
                    )));
                }
                stats.bytes += size;
                drop(file);
                apply_meta(&path, &meta, false)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("symbolic link without a target".into()))?
                    .into_owned();
                clear(&path, false)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(write_err(&path))?;
                apply_meta(&path, &meta, true)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("hard link without a target".into()))?
                    .into_owned();
                let target_parts = components(&target, limits)
                    .map_err(|why| unsafe_entry(format!("hard link target: {why}")))?;
                let source = prepare_parents(dest, &target_parts, &name)?;
                let source_meta = fs::symlink_metadata(&source).map_err(|_| {
                    unsafe_entry(format!(
                        "hard link target {:?} is not in this layer",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                if source_meta.is_dir() {
                    return Err(unsafe_entry("hard link to a directory".into()));
                }
                if source != path {
                    clear(&path, false)?;
                    fs::hard_link(&source, &path).map_err(write_err(&path))?;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let flag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = u64::from(header.device_major().ok().flatten().unwrap_or(0));
                let minor = u64::from(header.device_minor().ok().flatten().unwrap_or(0));
                clear(&path, false)?;
                mknod(
                    &path,
                    flag,
                    Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(major, minor),
                )
                .map_err(errno_err(&path))?;
                apply_meta(&path, &meta, false)?;
            }
            // PAX and GNU headers are consumed by the tar reader; anything
            // else (sparse files, volume labels) has no place in a layer.
            other => {
                return Err(unsafe_entry(format!("unsupported entry type {other:?}")));
            }
        }
    }
    for (path, meta) in dirs.iter().rev() {
        apply_meta(path, meta, false)?;
    }
    Ok(stats)
}

/// `SCHILY.xattr.*` PAX records of an entry.
fn xattrs_of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Vec<(String, Vec<u8>)>, UnpackError> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for ext in exts {
            let ext = ext.map_err(UnpackError::Read)?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h
    }

    /// Kind, name, link target and content of a test entry.
    type Entry<'a> = (tar::EntryType, &'a str, &'a str, &'a [u8]);

    /// A tar with raw names (the `tar` crate's builder refuses `..`).
    fn raw_tar(entries: &[Entry]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (kind, name, link, data) in entries {
            let mut h = header(*kind, 0o644, data.len() as u64);
            let n = name.as_bytes();
            h.as_old_mut().name[..n.len()].copy_from_slice(n);
            let l = link.as_bytes();
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack_into(tar: &[u8]) -> (tempfile::TempDir, PathBuf, Result<Unpacked, UnpackError>) {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let r = unpack(tar, &dest, &Limits::default());
        (tmp, dest, r)
    }

    use tar::EntryType as T;

    #[test]
    fn ordinary_layer() {
        let tar = raw_tar(&[
            (T::Directory, "./etc/", "", b""),
            (T::Regular, "./etc/hostname", "", b"box\n"),
            (T::Symlink, "etc/link", "hostname", b""),
            (T::Link, "etc/hard", "etc/hostname", b""),
            (T::Fifo, "etc/fifo", "", b""),
            (T::Regular, "deep/er/file", "", b"x"),
        ]);
        let (_t, dest, r) = unpack_into(&tar);
        let stats = r.unwrap();
        assert_eq!(stats.entries, 6);
        assert_eq!(stats.bytes, 5);
        assert_eq!(
            fs::read_to_string(dest.join("etc/hostname")).unwrap(),
            "box\n"
        );
        assert_eq!(
            fs::read_link(dest.join("etc/link")).unwrap(),
            Path::new("hostname")
        );
        let a = fs::metadata(dest.join("etc/hostname")).unwrap();
        let b = fs::metadata(dest.join("etc/hard")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        assert!(
            fs::symlink_metadata(dest.join("etc/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(a.mtime(), 1_600_000_000);
        assert_eq!(
            fs::metadata(dest.join("etc")).unwrap().mtime(),
            1_600_000_000
        );
        assert_eq!(a.mode() & 0o777, 0o644);
    }

    #[test]
    fn whiteouts_become_overlay_form() {
        let tar = raw_tar(&[
            (T::Regular, "data/.wh.gone", "", b""),
            (T::Regular, "opaque/.wh..wh..opq", "", b""),
            (T::Regular, "opaque/.wh..wh.plnk", "", b""),
        ]);
        let (_t, dest, r) = unpack_into(&tar);
        r.unwrap();
        let m = fs::symlink_metadata(dest.join("data/gone")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert_eq!(
            xattr::get(dest.join("opaque"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!dest.join("opaque/.wh..wh.plnk").exists());
    }

    #[test]
    fn hostile_entries_are_refused() {
        let cases: &[(&[Entry], &str)] = &[
            (&[(T::Regular, "../escape", "", b"x")], "\"..\""),
            (&[(T::Regular, "a/../../escape", "", b"x")], "\"..\""),
            (&[(T::Regular, "/etc/escape", "", b"x")], "absolute"),
            (
                &[
                    (T::Symlink, "evil", "/tmp", b""),
                    (T::Regular, "evil/escape", "", b"x"),
                ],
                "symbolic link",
            ),
            (
                &[
                    (T::Symlink, "evil", "..", b""),
                    (T::Regular, "evil/escape", "", b"x"),
                ],
                "symbolic link",
            ),
            (&[(T::Link, "hard", "../../etc/passwd", b"")], "\"..\""),
            (&[(T::Link, "hard", "/etc/passwd", b"")], "absolute"),
            (&[(T::Link, "hard", "missing", b"")], "not in this layer"),
            (
                &[
                    (T::Symlink, "evil", "/etc", b""),
                    (T::Link, "hard", "evil/passwd", b""),
                ],
                "symbolic link",
            ),
        ];
        for (entries, why) in cases {
            let tar = raw_tar(entries);
            let (tmp, _dest, r) = unpack_into(&tar);
            let err = r.expect_err(why).to_string();
            assert!(err.contains(why), "{err}");
            assert!(!tmp.path().join("escape").exists());
        }
    }

    #[test]
    fn absurd_sizes_fail_cleanly() {
        // A header declaring far more data than the stream holds.
        let mut h = header(T::Regular, 0o644, 1 << 40);
        h.as_old_mut().name[..4].copy_from_slice(b"huge");
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend_from_slice(&[0u8; 1024]);
        let (_t, _d, r) = unpack_into(&tar);
        assert!(matches!(r, Err(UnpackError::TooLarge(_))), "{r:?}");

        let tmp = tempfile::tempdir().unwrap();
        let small = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let mut h = header(T::Regular, 0o644, 1000);
        h.as_old_mut().name[..5].copy_from_slice(b"short");
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend_from_slice(&[7u8; 100]);
        let err = unpack(&tar[..], tmp.path(), &small).unwrap_err();
        assert!(matches!(err, UnpackError::Read(_)), "{err}");

        let few = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        let tar = raw_tar(&[
            (T::Regular, "a", "", b""),
            (T::Regular, "b", "", b""),
            (T::Regular, "c", "", b""),
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let err = unpack(&tar[..], tmp.path(), &few).unwrap_err();
        assert!(err.to_string().contains("more than 2 entries"), "{err}");
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let tar = raw_tar(&[
            (T::Regular, "x", "", b"file"),
            (T::Directory, "x", "", b""),
            (T::Regular, "x/inner", "", b"1"),
            (T::Regular, "y", "", b"old"),
            (T::Regular, "y", "", b"new"),
        ]);
        let (_t, dest, r) = unpack_into(&tar);
        r.unwrap();
        assert!(dest.join("x").is_dir());
        assert_eq!(fs::read_to_string(dest.join("y")).unwrap(), "new");
    }
}
