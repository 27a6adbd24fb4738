//! Idmapped mounts (Linux 5.12; overlay 5.19, tmpfs 6.3): a clone of a
//! mount whose file owners are seen through a user namespace's ID map, so
//! a container's mapped root owns what the host's root owns, and nothing
//! is chowned. Made with `open_tree(OPEN_TREE_CLONE)`, `mount_setattr(
//! MOUNT_ATTR_IDMAP)` and `move_mount`, which neither nix nor the OCI
//! runtime (runc before 1.2) offers.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::{MntFlags, umount2};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A detached copy of the mount at `source` (with the mounts below it
/// when `recursive`), seen through the ID map of the user namespace
/// `userns`. Fails (EINVAL) where the filesystem cannot be idmapped.
pub fn idmapped_clone(source: &Path, userns: impl AsFd, recursive: bool) -> io::Result<OwnedFd> {
    let path = c_path(source)?;
    let recursion = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a NUL-terminated path; the returned descriptor is owned here.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | recursion,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_fd().as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: `attr` lives across the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | recursion,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Attaches the detached mount `tree` at `target`.
pub fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let to = c_path(target)?;
    let empty = c"";
    // SAFETY: NUL-terminated paths and a descriptor owned by the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts an idmapped copy of `source` at `target` (an existing file or
/// directory of the same kind).
pub fn bind_idmapped(
    source: &Path,
    target: &Path,
    userns: impl AsFd,
    recursive: bool,
) -> io::Result<()> {
    let tree = idmapped_clone(source, userns, recursive)?;
    attach(&tree, target)
}

/// Replaces the mount at `target` by an idmapped copy of itself: the
/// original is detached once the copy exists, so one mount is left there.
pub fn remount_idmapped(target: &Path, userns: impl AsFd) -> io::Result<()> {
    let tree = idmapped_clone(target, userns, false)?;
    umount2(target, MntFlags::MNT_DETACH)?;
    attach(&tree, target)
}
