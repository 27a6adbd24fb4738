//! Files inside an untrusted tree — a layer being unpacked, a container's
//! rootfs — reached by descriptor, never by a path string.
//!
//! Every lookup is done by the kernel with `openat2`, from a descriptor of the
//! tree's top: [`Scope::Beneath`] refuses any symbolic link and anything
//! above the top (for layers, whose own links must never be followed while
//! they are written); [`Scope::InRoot`] follows links as the container would
//! see them, with the top as `/` (for reading and making directories in a
//! rootfs). Either way no name, link, link chain or `..` can lead outside,
//! and a lookup the kernel gives up on (too many links) fails instead of
//! being finished as a string.
#![deny(unsafe_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// How lookups below the top resolve symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No symbolic link is followed at all; nothing above the top is reached.
    Beneath,
    /// Links are followed with the top as `/`, as inside a chroot.
    InRoot,
}

impl Scope {
    fn resolve(self) -> ResolveFlag {
        match self {
            Scope::Beneath => ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
            Scope::InRoot => ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        }
    }
}

/// Why a file of the tree could not be reached or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on `path` (relative to the top) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path, relative to the top.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a regular file (a FIFO, device, socket or directory).
    #[error("{}: not a regular file", path.display())]
    NotRegular {
        /// The path, relative to the top.
        path: PathBuf,
    },
    /// The file is larger than the caller accepts.
    #[error("{}: larger than {limit} bytes", path.display())]
    TooLarge {
        /// The path, relative to the top.
        path: PathBuf,
        /// The largest size accepted.
        limit: u64,
    },
}

impl Error {
    /// True when the file (or a parent) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn io_at(path: &Path) -> impl FnOnce(Errno) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::from(e),
    }
}

/// A directory tree whose contents are not trusted, held open by descriptor.
#[derive(Debug)]
pub struct Tree {
    top: OwnedFd,
    scope: Scope,
}

/// `path` made relative: leading `/` dropped, so `openat2` takes it below the
/// top whatever the scope ("." for the top itself).
fn relative(path: &Path) -> &Path {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

impl Tree {
    /// Opens the tree at `top`, a trusted path of the host.
    pub fn open(top: &Path, scope: Scope) -> io::Result<Self> {
        let top = nix::fcntl::open(
            top,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { top, scope })
    }

    /// The descriptor of the top.
    pub fn top(&self) -> BorrowedFd<'_> {
        self.top.as_fd()
    }

    /// Opens `path` (relative to the top, or absolute as seen from inside)
    /// with `flags`, resolved within the tree.
    pub fn open_at(&self, path: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, Error> {
        open_in(self.top.as_fd(), path, flags, mode, self.scope)
    }

    /// Opens the directory at `path` for reading and as a base of `*at`
    /// calls.
    pub fn dir(&self, path: &Path) -> Result<OwnedFd, Error> {
        self.open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
    }

    /// Reads the regular file at `path`, at most `limit` bytes; `Ok(None)`
    /// when it does not exist. It is opened non-blocking, so a FIFO or a
    /// device planted at its name is refused without waiting on it.
    pub fn read_regular(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = match self.open_at(path, flags, Mode::empty()) {
            Err(e) if e.is_not_found() => return Ok(None),
            other => other?,
        };
        let stat = fstat(&fd).map_err(io_at(path))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(Error::NotRegular {
                path: path.to_path_buf(),
            });
        }
        let mut data = Vec::new();
        File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if data.len() as u64 > limit {
            return Err(Error::TooLarge {
                path: path.to_path_buf(),
                limit,
            });
        }
        Ok(Some(data))
    }

    /// Makes the directory `path` and its missing parents, resolving each
    /// existing part within the tree (so links the tree holds are followed
    /// as the scope says, and never out of it); returns the directory.
    pub fn mkdir_all(&self, path: &Path, mode: Mode) -> Result<OwnedFd, Error> {
        let mut done = PathBuf::new();
        let mut dir = self.dir(Path::new("."))?;
        for part in relative(path).components() {
            let name = match part {
                Component::Normal(name) => name,
                Component::CurDir => continue,
                // In the tree's terms `..` is resolved by the kernel too.
                Component::ParentDir => OsStr::new(".."),
                Component::RootDir | Component::Prefix(_) => continue,
            };
            done.push(name);
            dir = match self.dir(&done) {
                Ok(d) => d,
                Err(e) if e.is_not_found() => {
                    match mkdirat(&dir, name, mode) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(io_at(&done)(e)),
                    }
                    // The new name is looked up like any other: if something
                    // else took it meanwhile, it is resolved within the tree.
                    self.dir(&done)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(dir)
    }
}

/// `openat2` of `path` below `dir` within `scope`, close-on-exec.
pub fn open_in(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    mode: Mode,
    scope: Scope,
) -> Result<OwnedFd, Error> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(scope.resolve());
    loop {
        match openat2(dir, relative(path), how) {
            // Another rename in the tree moved something during the lookup.
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            other => return other.map_err(io_at(path)),
        }
    }
}

/// Removes `name` in `dir`, a directory with all it holds, never following
/// a symbolic link; nothing there is not an error.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    use nix::unistd::{UnlinkatFlags, unlinkat};
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = open_in(
        dir,
        Path::new(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
        Scope::Beneath,
    )
    .map_err(|e| match e {
        Error::Io { source, .. } => source,
        other => io::Error::other(other),
    })?;
    let names: Vec<Vec<u8>> = {
        let mut listing = nix::dir::Dir::from_fd(sub.try_clone()?)?;
        listing
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect()
    };
    for child in names {
        remove_all_at(sub.as_fd(), OsStr::from_bytes(&child))?;
    }
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
