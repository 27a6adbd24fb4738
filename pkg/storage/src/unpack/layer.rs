//! The layer directory being written, with the parent directory last used
//! kept open: entries come grouped by directory, so most need no walk.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crio_saferoot::{Scope, Tree, open_in, remove_all_at};
use nix::sys::stat::{Mode, SFlag, mkdirat};

use super::{
    UnpackError, UnsafeReason, dir_flags, errno_err, kind_of, rel_path, stat_at, tree_err,
    write_err,
};

/// The layer being written: its top and the parent directory last used
/// (entries come grouped by directory, so most need no walk).
pub(super) struct Layer {
    pub(super) tree: Tree,
    pub(super) last_parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
}

impl Layer {
    /// The directory holding `parts`' last component, made (and any file in
    /// the way replaced) as needed; a link among the parents is refused.
    pub(super) fn parent(
        &mut self,
        parents: &[Vec<u8>],
        entry: &str,
    ) -> Result<BorrowedFd<'_>, UnpackError> {
        if self.last_parent.as_ref().map(|(p, _)| p.as_slice()) != Some(parents) {
            let mut dir = open_in(
                self.tree.top(),
                Path::new("."),
                dir_flags(),
                Mode::empty(),
                Scope::Beneath,
            )
            .map_err(tree_err)?;
            for (i, part) in parents.iter().enumerate() {
                let name = OsStr::from_bytes(part);
                let here = rel_path(&parents[..=i]);
                match stat_at(dir.as_fd(), name).map_err(errno_err(&here))? {
                    Some(s) if kind_of(&s) == SFlag::S_IFDIR => {}
                    Some(s) if kind_of(&s) == SFlag::S_IFLNK => {
                        return Err(UnpackError::Unsafe {
                            entry: entry.to_string(),
                            why: UnsafeReason::ParentIsLink(here),
                        });
                    }
                    found => {
                        // A file where a directory is needed: the later entry wins.
                        if found.is_some() {
                            nix::unistd::unlinkat(
                                dir.as_fd(),
                                name,
                                nix::unistd::UnlinkatFlags::NoRemoveDir,
                            )
                            .map_err(errno_err(&here))?;
                        }
                        mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
                            .map_err(errno_err(&here))?;
                    }
                }
                dir = open_in(
                    dir.as_fd(),
                    Path::new(name),
                    dir_flags(),
                    Mode::empty(),
                    Scope::Beneath,
                )
                .map_err(tree_err)?;
            }
            self.last_parent = Some((parents.to_vec(), dir));
        }
        Ok(self
            .last_parent
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("just set"))
    }

    /// Removes whatever is at `name` in the current parent unless it is a
    /// directory and `keep_dir`; true when a directory is there afterwards.
    pub(super) fn clear(
        &mut self,
        name: &OsStr,
        keep_dir: bool,
        path: &Path,
    ) -> Result<bool, UnpackError> {
        let (_, dir) = self.last_parent.as_ref().expect("parent opened first");
        match stat_at(dir.as_fd(), name).map_err(errno_err(path))? {
            None => Ok(false),
            Some(s) if kind_of(&s) == SFlag::S_IFDIR => {
                if keep_dir {
                    return Ok(true);
                }
                remove_all_at(dir.as_fd(), name).map_err(write_err(path))?;
                // The removed directory may be a parent of the one cached.
                self.last_parent = None;
                Ok(false)
            }
            Some(_) => {
                nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                    .map_err(errno_err(path))?;
                Ok(false)
            }
        }
    }
}
