//! Unpacking one layer tar stream into its own directory, treating the input
//! as hostile: no entry, hard link or parent symlink may reach outside the
//! destination, and sizes and counts are bounded.
//!
//! Everything is done by descriptor from the destination's top
//! ([`crio_saferoot`]): parents are opened without following any link, each
//! entry is made with an `*at` call in its parent, and metadata (owner,
//! mode, times, attributes) is applied to a descriptor of the entry itself,
//! never to a path looked up again later — so a later entry that replaces a
//! directory with a link cannot redirect the directory's metadata.
//!
//! Whiteouts become overlayfs's form as they are met: `.wh.NAME` a 0:0
//! character device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque`
//! attribute on its directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crio_saferoot::{Scope, Tree, open_in};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, mkdirat, mknodat};
use xattr::FileExt;

mod layer;
mod meta;
use layer::Layer;
use meta::{Meta, apply_meta, apply_meta_link, apply_meta_node};

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
        why: UnsafeReason,
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
        /// The path written, relative to the layer.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// What makes an entry unsafe (or unfit) to unpack.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeReason {
    /// The path is longer than [`Limits::max_path`].
    #[error("path longer than {0} bytes")]
    PathTooLong(usize),
    /// The path starts at `/`.
    #[error("absolute path")]
    Absolute,
    /// The path holds a NUL byte.
    #[error("NUL byte in path")]
    Nul,
    /// The path has a `..` component.
    #[error("path climbs out with \"..\"")]
    DotDot,
    /// A directory on the way is a symbolic link.
    #[error("parent {0:?} is a symbolic link")]
    ParentIsLink(PathBuf),
    /// A symbolic link entry without a target.
    #[error("symbolic link without a target")]
    SymlinkWithoutTarget,
    /// A hard link entry without a target.
    #[error("hard link without a target")]
    HardLinkWithoutTarget,
    /// The hard link's target path is itself unsafe.
    #[error("hard link target: {0}")]
    HardLinkTarget(Box<UnsafeReason>),
    /// The hard link's target is not a file unpacked before in this layer.
    #[error("hard link target {0:?} is not in this layer")]
    HardLinkElsewhere(String),
    /// The hard link's target is reached through a symbolic link.
    #[error("hard link target: parent is a symbolic link")]
    HardLinkThroughLink,
    /// The hard link's target is a directory.
    #[error("hard link to a directory")]
    HardLinkToDirectory,
    /// Sparse files, volume labels and the like have no place in a layer.
    #[error("unsupported entry type {0:?}")]
    Unsupported(tar::EntryType),
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn errno_err(path: &Path) -> impl FnOnce(Errno) -> UnpackError + '_ {
    move |e| write_err(path)(io::Error::from(e))
}

fn tree_err(e: crio_saferoot::Error) -> UnpackError {
    match e {
        crio_saferoot::Error::Io { path, source } => UnpackError::Write { path, source },
        other => UnpackError::Write {
            path: PathBuf::new(),
            source: io::Error::other(other),
        },
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
fn components(raw: &[u8], limits: &Limits) -> Result<Vec<Vec<u8>>, UnsafeReason> {
    if raw.len() > limits.max_path {
        return Err(UnsafeReason::PathTooLong(limits.max_path));
    }
    if raw.first() == Some(&b'/') {
        return Err(UnsafeReason::Absolute);
    }
    if raw.contains(&0) {
        return Err(UnsafeReason::Nul);
    }
    let mut parts = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(UnsafeReason::DotDot),
            p => parts.push(p.to_vec()),
        }
    }
    Ok(parts)
}

fn rel_path(parts: &[Vec<u8>]) -> PathBuf {
    parts.iter().map(|p| OsStr::from_bytes(p)).collect()
}

/// A directory opened to read and to be the base of `*at` calls; the
/// `Beneath` scope makes any link on the way, the last name too, `ELOOP`.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY
}

/// What a name in a directory is, without following a link.
fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<FileStat>, Errno> {
    match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn kind_of(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT
}

/// Unpacks the tar stream `reader` into `dest`, an existing empty directory.
pub fn unpack(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked, UnpackError> {
    let mut unpacker = Unpacker {
        layer: Layer {
            tree: Tree::open(dest, Scope::Beneath).map_err(write_err(dest))?,
            last_parent: None,
        },
        limits,
        stats: Unpacked::default(),
        dirs: Vec::new(),
        seen_dirs: HashMap::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        unpacker.entry(entry.map_err(UnpackError::Read)?)?;
    }
    unpacker.finish()
}

/// The state of one unpacking.
struct Unpacker<'l> {
    layer: Layer,
    limits: &'l Limits,
    stats: Unpacked,
    /// Directory metadata is applied last: adding children changes mtimes.
    dirs: Vec<(PathBuf, Meta)>,
    seen_dirs: HashMap<PathBuf, usize>,
}

/// Where an entry goes: its name as in the archive, its components, the
/// last of them and its parents, and its path relative to the layer.
struct Place<'e> {
    name: &'e str,
    parts: &'e [Vec<u8>],
    parents: &'e [Vec<u8>],
    base: &'e OsStr,
    path: &'e Path,
}

impl Place<'_> {
    fn refuse(&self, why: UnsafeReason) -> UnpackError {
        UnpackError::Unsafe {
            entry: self.name.to_string(),
            why,
        }
    }
}

impl Unpacker<'_> {
    /// Checks one entry against the limits and applies it.
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<R>) -> Result<(), UnpackError> {
        let limits = self.limits;
        self.stats.entries += 1;
        if self.stats.entries > limits.max_entries {
            return Err(UnpackError::TooLarge(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let xattrs = xattrs_of(&mut entry)?;
        let header = entry.header().clone();
        let size = entry.size();
        if size > limits.max_bytes || self.stats.bytes + size > limits.max_bytes {
            return Err(UnpackError::TooLarge(format!(
                "entry {name:?} declares {size} bytes; the layer may hold {} in all",
                limits.max_bytes
            )));
        }
        let parts = components(&raw, limits).map_err(|why| UnpackError::Unsafe {
            entry: name.clone(),
            why,
        })?;
        let Some((base, parents)) = parts.split_last() else {
            return Ok(()); // the root itself ("./")
        };
        let meta = Meta {
            mode: header.mode().map_err(UnpackError::Read)?,
            // Some writers leave owner fields blank: that means root.
            uid: u32::try_from(header.uid().unwrap_or(0)).unwrap_or(u32::MAX),
            gid: u32::try_from(header.gid().unwrap_or(0)).unwrap_or(u32::MAX),
            mtime: i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0),
            xattrs,
        };
        let path = rel_path(&parts);
        let place = Place {
            name: &name,
            parts: &parts,
            parents,
            base: OsStr::from_bytes(base),
            path: &path,
        };
        self.layer.parent(parents, &name)?;
        if place.base.as_bytes() == OPAQUE.as_bytes() {
            return self.opaque(&place);
        }
        if let Some(hidden) = place.base.as_bytes().strip_prefix(WHITEOUT.as_bytes()) {
            return self.whiteout(&place, OsStr::from_bytes(hidden));
        }
        match header.entry_type() {
            tar::EntryType::Directory => self.directory(&place, meta),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.regular(&place, &mut entry, size, &meta)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| place.refuse(UnsafeReason::SymlinkWithoutTarget))?;
                self.symlink(&place, &target, &meta)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| place.refuse(UnsafeReason::HardLinkWithoutTarget))?;
                self.hard_link(&place, &target)
            }
            kind @ (tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) => {
                self.node(&place, kind, &header, &meta)
            }
            // PAX and GNU headers are consumed by the tar reader; anything
            // else (sparse files, volume labels) has no place in a layer.
            other => Err(place.refuse(UnsafeReason::Unsupported(other))),
        }
    }

    /// `.wh..wh..opq`: the parent directory hides the layers below.
    fn opaque(&mut self, place: &Place<'_>) -> Result<(), UnpackError> {
        let dir = open_in(
            self.layer.tree.top(),
            &rel_path(place.parents),
            dir_flags(),
            Mode::empty(),
            Scope::Beneath,
        )
        .map_err(tree_err)?;
        File::from(dir)
            .set_xattr(OPAQUE_XATTR, b"y")
            .map_err(write_err(place.path))
    }

    /// `.wh.NAME`: NAME is deleted, an overlay whiteout (a 0/0 character
    /// device) in its place.
    fn whiteout(&mut self, place: &Place<'_>, hidden: &OsStr) -> Result<(), UnpackError> {
        if hidden.as_bytes().starts_with(WHITEOUT.as_bytes()) || hidden.is_empty() {
            return Ok(()); // aufs bookkeeping (.wh..wh.plnk and the like)
        }
        let target = place.path.with_file_name(hidden);
        self.layer.clear(hidden, false, &target)?;
        let dir = self.layer.parent(place.parents, place.name)?;
        mknodat(dir, hidden, SFlag::S_IFCHR, Mode::empty(), 0).map_err(errno_err(&target))
    }

    fn directory(&mut self, place: &Place<'_>, meta: Meta) -> Result<(), UnpackError> {
        if !self.layer.clear(place.base, true, place.path)? {
            let dir = self.layer.parent(place.parents, place.name)?;
            mkdirat(dir, place.base, Mode::from_bits_truncate(0o755))
                .map_err(errno_err(place.path))?;
        }
        if let Some(i) = self.seen_dirs.get(place.path) {
            self.dirs[*i].1 = meta;
        } else {
            self.seen_dirs
                .insert(place.path.to_path_buf(), self.dirs.len());
            self.dirs.push((place.path.to_path_buf(), meta));
        }
        Ok(())
    }

    fn regular(
        &mut self,
        place: &Place<'_>,
        content: &mut impl Read,
        size: u64,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        self.layer.clear(place.base, false, place.path)?;
        let dir = self.layer.parent(place.parents, place.name)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let fd = open_in(
            dir,
            Path::new(place.base),
            flags,
            Mode::from_bits_truncate(0o600),
            Scope::Beneath,
        )
        .map_err(tree_err)?;
        let mut file = File::from(fd);
        let copied = io::copy(&mut content.take(size), &mut file).map_err(UnpackError::Read)?;
        if copied != size {
            return Err(UnpackError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("entry {:?}: {copied} of {size} bytes", place.name),
            )));
        }
        self.stats.bytes += size;
        apply_meta(&file, meta, place.path)
    }

    fn symlink(
        &mut self,
        place: &Place<'_>,
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        self.layer.clear(place.base, false, place.path)?;
        let dir = self.layer.parent(place.parents, place.name)?;
        nix::unistd::symlinkat(OsStr::from_bytes(target), dir, place.base)
            .map_err(errno_err(place.path))?;
        apply_meta_link(dir, place.base, meta, place.path)
    }

    /// A hard link to a file unpacked before in this layer, reached without
    /// following a link.
    fn hard_link(&mut self, place: &Place<'_>, target: &[u8]) -> Result<(), UnpackError> {
        let target_parts = components(target, self.limits)
            .map_err(|why| place.refuse(UnsafeReason::HardLinkTarget(Box::new(why))))?;
        let not_here = || {
            place.refuse(UnsafeReason::HardLinkElsewhere(
                String::from_utf8_lossy(target).into_owned(),
            ))
        };
        let (source_base, source_parents) = target_parts.split_last().ok_or_else(not_here)?;
        let source_base = OsStr::from_bytes(source_base);
        let source_dir = match open_in(
            self.layer.tree.top(),
            &rel_path(source_parents),
            dir_flags(),
            Mode::empty(),
            Scope::Beneath,
        ) {
            Ok(fd) => fd,
            Err(e) if matches!(&e, crio_saferoot::Error::Io { source, .. } if source.raw_os_error() == Some(libc::ELOOP)) =>
            {
                return Err(place.refuse(UnsafeReason::HardLinkThroughLink));
            }
            Err(_) => return Err(not_here()),
        };
        let source_stat = stat_at(source_dir.as_fd(), source_base)
            .map_err(errno_err(place.path))?
            .ok_or_else(not_here)?;
        if kind_of(&source_stat) == SFlag::S_IFDIR {
            return Err(place.refuse(UnsafeReason::HardLinkToDirectory));
        }
        if target_parts != place.parts {
            self.layer.clear(place.base, false, place.path)?;
            let dir = self.layer.parent(place.parents, place.name)?;
            nix::unistd::linkat(
                source_dir.as_fd(),
                source_base,
                dir,
                place.base,
                AtFlags::empty(),
            )
            .map_err(errno_err(place.path))?;
        }
        Ok(())
    }

    /// A character or block device or a FIFO.
    fn node(
        &mut self,
        place: &Place<'_>,
        kind: tar::EntryType,
        header: &tar::Header,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let flag = match kind {
            tar::EntryType::Char => SFlag::S_IFCHR,
            tar::EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let major = u64::from(header.device_major().ok().flatten().unwrap_or(0));
        let minor = u64::from(header.device_minor().ok().flatten().unwrap_or(0));
        self.layer.clear(place.base, false, place.path)?;
        let dir = self.layer.parent(place.parents, place.name)?;
        mknodat(
            dir,
            place.base,
            flag,
            Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(major, minor),
        )
        .map_err(errno_err(place.path))?;
        let node = open_in(
            dir,
            Path::new(place.base),
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
            Mode::empty(),
            Scope::Beneath,
        )
        .map_err(tree_err)?;
        apply_meta_node(&node, meta, place.path)
    }

    /// Applies the directories' metadata, deepest last entry first.
    fn finish(self) -> Result<Unpacked, UnpackError> {
        for (path, meta) in self.dirs.iter().rev() {
            // A directory a later entry replaced (by a link, a file) is skipped:
            // its metadata belongs to nothing that is still there.
            match self.layer.tree.open_at(path, dir_flags(), Mode::empty()) {
                Ok(fd) => apply_meta(&File::from(fd), meta, path)?,
                Err(crio_saferoot::Error::Io { source, .. })
                    if matches!(
                        source.raw_os_error(),
                        Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::ENOENT)
                    ) => {}
                Err(e) => return Err(tree_err(e)),
            }
        }
        Ok(self.stats)
    }
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
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

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

    #[test]
    fn directory_metadata_never_follows_a_later_link() {
        // `x` a set-uid 04777 directory, then `x` replaced by a link to a file
        // outside the layer: the directory's metadata must not reach it.
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host-file");
        fs::write(&host, b"host").unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).unwrap();
        let before = fs::metadata(&host).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(T::Directory, 0o4777, 0);
        h.set_mtime(1);
        b.append_data(&mut h, "x", &[][..]).unwrap();
        let mut h = header(T::Symlink, 0o777, 0);
        b.append_link(&mut h, "x", &host).unwrap();
        let tar = b.into_inner().unwrap();
        let dest = tmp.path().join("layer");
        fs::create_dir(&dest).unwrap();
        unpack(&tar[..], &dest, &Limits::default()).unwrap();
        let after = fs::metadata(&host).unwrap();
        assert_eq!(after.mode(), before.mode());
        assert_eq!(after.mtime(), before.mtime());
        assert_eq!(fs::read_link(dest.join("x")).unwrap(), host);
    }

    #[test]
    fn metadata_lands_on_each_kind() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(T::Directory, 0o750, 0);
        h.set_uid(7);
        b.append_data(&mut h, "d", &[][..]).unwrap();
        let mut h = header(T::Regular, 0o4755, 2);
        h.set_uid(8);
        h.set_gid(9);
        b.append_data(&mut h, "d/suid", &b"ok"[..]).unwrap();
        let mut h = header(T::Fifo, 0o640, 0);
        h.set_gid(5);
        b.append_data(&mut h, "d/fifo", &[][..]).unwrap();
        let mut h = header(T::Symlink, 0o777, 0);
        h.set_uid(6);
        b.append_link(&mut h, "d/link", "suid").unwrap();
        let (_t, dest, r) = unpack_into(&b.into_inner().unwrap());
        r.unwrap();
        let m = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
        assert_eq!((m("d").mode() & 0o7777, m("d").uid()), (0o750, 7));
        assert_eq!(m("d").mtime(), 1_600_000_000);
        let f = m("d/suid");
        assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o4755, 8, 9));
        let f = m("d/fifo");
        assert!(f.file_type().is_fifo());
        assert_eq!(
            (f.mode() & 0o7777, f.gid(), f.mtime()),
            (0o640, 5, 1_600_000_000)
        );
        let l = m("d/link");
        assert_eq!((l.uid(), l.mtime()), (6, 1_600_000_000));
    }

    #[test]
    fn replacing_a_parent_directory_writes_into_the_new_one() {
        let tar = raw_tar(&[
            (T::Directory, "a/", "", b""),
            (T::Regular, "a/one", "", b"1"),
            (T::Regular, "a", "", b"file now"),
            (T::Regular, "a/two", "", b"2"),
            (T::Symlink, "b", "a", b""),
            (T::Regular, "b/three", "", b"3"),
        ]);
        let (_t, dest, r) = unpack_into(&tar);
        let err = r.unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(dest.join("a").is_dir());
        assert!(!dest.join("a/one").exists());
        assert_eq!(fs::read(dest.join("a/two")).unwrap(), b"2");
        assert!(!dest.join("a/three").exists());
    }
}
