//! Ownership, mode, times and extended attributes of unpacked entries,
//! applied once their content is in place.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use xattr::FileExt;

use super::{UnpackError, errno_err, write_err};

/// Metadata applied to an entry once its content is in place.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn times(&self) -> TimeSpec {
        TimeSpec::new(self.mtime, 0)
    }

    fn owner(&self) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)))
    }

    fn mode(&self) -> Mode {
        Mode::from_bits_truncate(self.mode & 0o7777)
    }
}

/// Hosts without SELinux refuse `security.*` labels: not fatal.
fn xattr_result(name: &str, r: io::Result<()>, path: &Path) -> Result<(), UnpackError> {
    match r {
        Err(e) if !name.starts_with("security.") => Err(write_err(path)(e)),
        _ => Ok(()),
    }
}

/// Applies `meta` to an open file or directory.
pub(super) fn apply_meta(file: &File, meta: &Meta, path: &Path) -> Result<(), UnpackError> {
    let (uid, gid) = meta.owner();
    nix::unistd::fchown(file, uid, gid).map_err(errno_err(path))?;
    for (name, value) in &meta.xattrs {
        xattr_result(name, file.set_xattr(name, value), path)?;
    }
    // After chown, which clears set-id bits.
    nix::sys::stat::fchmod(file, meta.mode()).map_err(errno_err(path))?;
    let t = meta.times();
    nix::sys::stat::futimens(file, &t, &t).map_err(errno_err(path))
}

/// Applies `meta` to a device or FIFO held by an `O_PATH` descriptor, which
/// is never opened for I/O; the `/proc/self/fd` name reaches that inode only.
pub(super) fn apply_meta_node(fd: &OwnedFd, meta: &Meta, path: &Path) -> Result<(), UnpackError> {
    let (uid, gid) = meta.owner();
    nix::unistd::fchownat(
        fd,
        "",
        uid,
        gid,
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno_err(path))?;
    let proc = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    for (name, value) in &meta.xattrs {
        xattr_result(name, xattr::set(&proc, name, value), path)?;
    }
    let cwd = nix::fcntl::AT_FDCWD;
    nix::sys::stat::fchmodat(
        cwd,
        &proc,
        meta.mode(),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(errno_err(path))?;
    let t = meta.times();
    nix::sys::stat::utimensat(cwd, &proc, &t, &t, UtimensatFlags::FollowSymlink)
        .map_err(errno_err(path))
}

/// Applies owner and times to the link `name` in `dir` itself.
pub(super) fn apply_meta_link(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    path: &Path,
) -> Result<(), UnpackError> {
    let (uid, gid) = meta.owner();
    nix::unistd::fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(errno_err(path))?;
    let t = meta.times();
    nix::sys::stat::utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(errno_err(path))
}
