//! Rootfs mounts a create request carries (containerd passes the image's
//! snapshot this way; the crio-rs daemon mounts the rootfs itself and
//! passes none): mounted at `bundle/rootfs`, unmounted at delete.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// One mount of a create request.
pub struct RootfsMount<'a> {
    /// Filesystem type (`overlay`, `bind`, …).
    pub kind: &'a str,
    /// Source.
    pub source: &'a str,
    /// Options, flags and data mixed, as in fstab.
    pub options: &'a [String],
}

/// Splits fstab-style options into mount flags and the data string.
fn flags_and_data(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, false),
            "rw" => (MsFlags::MS_RDONLY, true),
            "nosuid" => (MsFlags::MS_NOSUID, false),
            "nodev" => (MsFlags::MS_NODEV, false),
            "noexec" => (MsFlags::MS_NOEXEC, false),
            "bind" => (MsFlags::MS_BIND, false),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, false),
            "relatime" => (MsFlags::MS_RELATIME, false),
            "noatime" => (MsFlags::MS_NOATIME, false),
            _ => {
                data.push(o.as_str());
                continue;
            }
        };
        if clear {
            flags.remove(set);
        } else {
            flags.insert(set);
        }
    }
    (flags, data.join(","))
}

/// A rootfs that could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be made.
    #[error("create {}: {source}", target.display())]
    Create {
        /// The mount point.
        target: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A mount failed (those before it were undone).
    #[error("mount {kind} {source_path} on {}: {errno}", target.display())]
    Mount {
        /// Its filesystem type.
        kind: String,
        /// Its source.
        source_path: String,
        /// The mount point.
        target: PathBuf,
        /// Why.
        errno: nix::errno::Errno,
    },
}

/// Mounts `mounts` in order on `bundle/rootfs`; on failure unmounts what
/// was mounted and names the failing mount.
pub fn mount_rootfs(bundle: &Path, mounts: &[RootfsMount<'_>]) -> Result<(), MountError> {
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|source| MountError::Create {
        target: target.clone(),
        source,
    })?;
    for (i, m) in mounts.iter().enumerate() {
        let (flags, data) = flags_and_data(m.options);
        let kind = if m.kind == "bind" { None } else { Some(m.kind) };
        let data = (!data.is_empty()).then_some(data.as_str());
        if let Err(e) = mount(Some(m.source), &target, kind, flags, data) {
            for _ in 0..i {
                let _ = umount2(&target, MntFlags::MNT_DETACH);
            }
            return Err(MountError::Mount {
                kind: m.kind.to_string(),
                source_path: m.source.to_string(),
                target,
                errno: e,
            });
        }
    }
    Ok(())
}

/// Unmounts everything on `bundle/rootfs`.
pub fn unmount_rootfs(bundle: &Path) {
    let target = bundle.join("rootfs");
    while umount2(&target, MntFlags::MNT_DETACH).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "nosuid", "lowerdir=/a:/b", "index=off"]
            .map(String::from)
            .into();
        let (flags, data) = flags_and_data(&opts);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(data, "lowerdir=/a:/b,index=off");
        let (flags, data) = flags_and_data(&["rbind".into(), "ro".into(), "rw".into()]);
        assert_eq!(flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(data.is_empty());
    }
}
