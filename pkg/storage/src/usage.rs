//! Disk usage of a directory tree: bytes and inodes, hard links counted
//! once. The trees measured (containers' writable layers, image layers)
//! hold what images and containers put there, so the walk is bounded: it
//! never follows a symbolic link nor enters another mount (each directory
//! is opened by descriptor below its parent, refusing links and mount
//! points), keeps a bounded set of multiply linked inodes, and descends a
//! bounded depth.

use std::collections::HashSet;
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::{Dir, OwningIter};
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use serde::{Deserialize, Serialize};

/// Bytes and inodes used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of allocated blocks.
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.inodes = self.inodes.saturating_add(other.inodes);
    }
}

/// Bounds on one walk, so that a tree built to be expensive costs time on
/// a background thread, not memory or descriptors.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Multiply linked inodes remembered to count them once; past this,
    /// each link counts for 1/nlink of its inode (exact when all links are
    /// in the tree).
    pub max_tracked_links: usize,
    /// Directory levels entered (each open level holds two descriptors);
    /// deeper directories count as one inode each.
    pub max_depth: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        Self {
            max_tracked_links: 1 << 16,
            max_depth: 128,
        }
    }
}

/// What a walk measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walked {
    /// The whole tree.
    pub usage: Usage,
    /// The part below the top-level entry named by [`walk_with_part`].
    pub part: Usage,
    /// Directories deeper than [`WalkLimits::max_depth`] were not entered.
    pub truncated: bool,
}

/// Measures `root` (a directory; anything else measures as nothing, and
/// unreadable parts count as empty).
pub fn walk(root: &Path, limits: &WalkLimits) -> Walked {
    walk_with_part(root, None, limits)
}

/// Measures `root` and, separately, what lies below its entry `part` (a
/// container's upper dir within its directory), in one walk.
pub fn walk_with_part(root: &Path, part: Option<&OsStr>, limits: &WalkLimits) -> Walked {
    walk_counting(root, part, limits).finish()
}

fn walk_counting<'a>(root: &Path, part: Option<&OsStr>, limits: &'a WalkLimits) -> Counter<'a> {
    let mut counter = Counter::new(limits);
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(top) = open(root, flags, Mode::empty()) else {
        return counter;
    };
    let Ok(st) = fstat(&top) else {
        return counter;
    };
    counter.count(&st, false);
    let Some(frame) = Frame::new(top, false) else {
        return counter;
    };
    let device = st.st_dev;
    let mut stack = vec![frame];
    loop {
        let depth = stack.len();
        let Some(frame) = stack.last_mut() else {
            break;
        };
        let name = match frame.entries.next() {
            None | Some(Err(_)) => {
                stack.pop();
                continue;
            }
            Some(Ok(entry)) => entry.file_name().to_owned(),
        };
        if is_dot(&name) {
            continue;
        }
        // Gone meanwhile, or on another filesystem mounted here: not ours.
        let Ok(st) = fstatat(&frame.fd, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        if st.st_dev != device {
            continue;
        }
        let in_part =
            frame.in_part || (depth == 1 && part.is_some_and(|p| p.as_bytes() == name.to_bytes()));
        counter.count(&st, in_part);
        if !is_dir(&st) {
            continue;
        }
        if depth > limits.max_depth {
            counter.truncated = true;
            continue;
        }
        let sub = open_below(&frame.fd, &name).and_then(|fd| Frame::new(fd, in_part));
        stack.extend(sub);
    }
    counter
}

/// One open directory of the walk: its descriptor (for the lookups of its
/// entries) and its listing (on a duplicate of that descriptor).
struct Frame {
    fd: OwnedFd,
    entries: OwningIter,
    in_part: bool,
}

impl Frame {
    fn new(fd: OwnedFd, in_part: bool) -> Option<Self> {
        let entries = Dir::from_fd(fd.try_clone().ok()?).ok()?.into_iter();
        Some(Self {
            fd,
            entries,
            in_part,
        })
    }
}

/// Opens directory `name` of `dir`; not if it became a link, or is a mount
/// point (of any filesystem, bind mounts of this one included).
fn open_below(dir: &OwnedFd, name: &CStr) -> Option<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    openat2(dir.as_fd(), name, how).ok()
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// The unit of the sums: divides evenly by any link count up to 16.
const UNIT: u128 = 720_720;

/// Sums of one walk (bytes, inodes), in [`UNIT`]s so that links past the
/// set's bound can count for a share of their inode.
struct Counter<'a> {
    limits: &'a WalkLimits,
    links: HashSet<(u64, u64)>,
    whole: (u128, u128),
    part: (u128, u128),
    truncated: bool,
}

impl<'a> Counter<'a> {
    fn new(limits: &'a WalkLimits) -> Self {
        Self {
            limits,
            links: HashSet::new(),
            whole: (0, 0),
            part: (0, 0),
            truncated: false,
        }
    }

    fn count(&mut self, st: &FileStat, in_part: bool) {
        let bytes = u128::try_from(st.st_blocks).unwrap_or(0) * 512 * UNIT;
        let nlink = u128::from(st.st_nlink).max(1);
        let share = if is_dir(st) || nlink == 1 {
            1
        } else if self.links.contains(&(st.st_dev, st.st_ino)) {
            return;
        } else if self.links.len() < self.limits.max_tracked_links {
            self.links.insert((st.st_dev, st.st_ino));
            1
        } else {
            nlink
        };
        for (b, i) in [Some(&mut self.whole), in_part.then_some(&mut self.part)]
            .into_iter()
            .flatten()
        {
            *b += bytes / share;
            *i += UNIT / share;
        }
    }

    fn finish(&self) -> Walked {
        let round = |n: u128| u64::try_from((n + UNIT / 2) / UNIT).unwrap_or(u64::MAX);
        let usage = |(bytes, inodes): (u128, u128)| Usage {
            bytes: round(bytes),
            inodes: round(inodes),
        };
        Walked {
            usage: usage(self.whole),
            part: usage(self.part),
            truncated: self.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn usage(root: &Path) -> Usage {
        walk(root, &WalkLimits::default()).usage
    }

    fn limits(max_tracked_links: usize, max_depth: usize) -> WalkLimits {
        WalkLimits {
            max_tracked_links,
            max_depth,
        }
    }

    #[test]
    fn counts_hard_links_once() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(tmp.path().join("a"), tmp.path().join("b")).unwrap();
        fs::create_dir(tmp.path().join("d")).unwrap();
        let u = usage(tmp.path());
        assert_eq!(u.inodes, 3);
        assert!(u.bytes >= 10_000, "{u:?}");
        assert_eq!(usage(&tmp.path().join("missing")), Usage::default());
    }

    /// Past the bound on remembered links, each link counts for its share
    /// of the inode: the set stays at its bound and the sums stay exact.
    #[test]
    fn links_past_the_bound_count_by_share() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..10 {
            let a = tmp.path().join(format!("f{i}"));
            fs::write(&a, vec![7u8; 4096]).unwrap();
            for j in 0..(i % 3 + 1) {
                fs::hard_link(&a, tmp.path().join(format!("f{i}-{j}"))).unwrap();
            }
        }
        let exact = walk(tmp.path(), &limits(100, 8));
        assert_eq!(exact.usage.inodes, 11);
        for bound in [0, 1, 4] {
            let bounds = limits(bound, 8);
            let counter = walk_counting(tmp.path(), None, &bounds);
            assert_eq!(counter.links.len(), bound);
            assert_eq!(counter.finish().usage, exact.usage, "bound {bound}");
        }
    }

    /// A link to a file or directory outside is counted as the link it is.
    #[test]
    fn symlinks_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        for i in 0..50 {
            fs::write(outside.path().join(i.to_string()), b"x").unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("1"), tmp.path().join("file")).unwrap();
        assert_eq!(usage(tmp.path()).inodes, 3);
        // A root that is itself a link is not measured through it.
        assert_eq!(usage(&tmp.path().join("dir")), Usage::default());
    }

    /// The part below one top-level entry is summed on the side.
    #[test]
    fn part_below_an_entry() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("upper/x/y")).unwrap();
        fs::write(tmp.path().join("upper/x/f"), b"data").unwrap();
        fs::create_dir(tmp.path().join("work")).unwrap();
        fs::create_dir(tmp.path().join("work/upper")).unwrap();
        let w = walk_with_part(tmp.path(), Some(OsStr::new("upper")), &limits(10, 10));
        assert_eq!((w.usage.inodes, w.part.inodes), (7, 4));
        assert!(!w.truncated);
    }

    /// Directories past the depth bound are counted, not entered.
    #[test]
    fn depth_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("1/2/3/4/5");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("f"), b"x").unwrap();
        let all = walk(tmp.path(), &limits(10, 10));
        assert_eq!((all.usage.inodes, all.truncated), (7, false));
        let cut = walk(tmp.path(), &limits(10, 2));
        // root, 1, 2, 3 (counted, not entered)
        assert_eq!((cut.usage.inodes, cut.truncated), (4, true));
    }

    /// Unmounts (lazily) when dropped, so a failing test leaves no mount.
    struct Mounted(std::path::PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    fn mount(
        source: &Path,
        target: &Path,
        fstype: Option<&str>,
        flags: nix::mount::MsFlags,
    ) -> Mounted {
        nix::mount::mount(Some(source), target, fstype, flags, None::<&str>)
            .unwrap_or_else(|e| panic!("mount {} (the tests run as root): {e}", target.display()));
        Mounted(target.to_path_buf())
    }

    /// Another filesystem mounted in the tree, or a bind mount of this one,
    /// is not entered.
    #[test]
    fn mounts_are_not_entered() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, tmpfs, bind) = (
            tmp.path().join("data"),
            tmp.path().join("tmpfs"),
            tmp.path().join("bind"),
        );
        for d in [&data, &tmpfs, &bind] {
            fs::create_dir(d).unwrap();
        }
        for i in 0..20 {
            fs::write(data.join(i.to_string()), b"x").unwrap();
        }
        let before = usage(tmp.path());
        assert_eq!(before.inodes, 24);

        let _tmpfs = mount(
            Path::new("tmpfs"),
            &tmpfs,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
        );
        for i in 0..100 {
            fs::write(tmpfs.join(i.to_string()), b"x").unwrap();
        }
        let _bind = mount(&data, &bind, None, nix::mount::MsFlags::MS_BIND);
        assert_eq!(fs::read_dir(&bind).unwrap().count(), 20);
        let after = usage(tmp.path());
        // Neither the tmpfs nor what it covers counts; the bind mount's top
        // (the data directory again) counts once more, its files do not.
        assert_eq!(after.inodes, before.inodes - 1, "{after:?}");
    }
}
