//! Mount propagation needs the host side to cooperate: a bidirectional
//! mount's source must sit on a shared mount, a host-to-container one's on
//! a shared or slave mount, or nothing would propagate. Checked against
//! `/proc/self/mountinfo` as CRI-O does.

use std::path::{Path, PathBuf};

use crio_api::cri::MountPropagation;

/// The mount `path` lives on, from mountinfo text: (mount point, optional
/// fields); the last mounted of the longest matching mount points.
fn mount_of<'a>(mountinfo: &'a str, path: &Path) -> Option<(&'a str, Vec<&'a str>)> {
    let mut best: Option<(&str, Vec<&str>)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4).copied() else {
            continue;
        };
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let optional = fields
            .get(6..dash)
            .map(<[&str]>::to_vec)
            .unwrap_or_default();
        if path.starts_with(point) && best.as_ref().is_none_or(|(b, _)| point.len() >= b.len()) {
            best = Some((point, optional));
        }
    }
    best
}

/// Why a mount's propagation cannot be had on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropagationError {
    /// The path is on no mount of mountinfo.
    #[error("{} is on no mount", path.display())]
    NoMount {
        /// The host path.
        path: PathBuf,
    },
    /// The mount it is on does not propagate as asked.
    #[error(
        "{} is on the mount {point}, which is not {kind} mount: {mode} propagation needs one (mount --make-rshared {point})",
        path.display()
    )]
    NotPropagating {
        /// The host path.
        path: PathBuf,
        /// Its mount point.
        point: String,
        /// `a shared` or `a shared or slave`.
        kind: &'static str,
        /// The propagation asked for.
        mode: &'static str,
    },
}

/// Refuses a propagation the host mount of `host_path` cannot give,
/// naming the mount point.
pub fn check(mountinfo: &str, host_path: &Path, propagation: i32) -> Result<(), PropagationError> {
    let mode =
        MountPropagation::try_from(propagation).unwrap_or(MountPropagation::PropagationPrivate);
    let needs: &[&str] = match mode {
        MountPropagation::PropagationPrivate => return Ok(()),
        MountPropagation::PropagationHostToContainer => &["shared:", "master:"],
        MountPropagation::PropagationBidirectional => &["shared:"],
    };
    let Some((point, optional)) = mount_of(mountinfo, host_path) else {
        return Err(PropagationError::NoMount {
            path: host_path.into(),
        });
    };
    if optional
        .iter()
        .any(|o| needs.iter().any(|n| o.starts_with(n)))
    {
        return Ok(());
    }
    let (kind, mode) = if needs.len() == 1 {
        ("a shared", "bidirectional")
    } else {
        ("a shared or slave", "host-to-container")
    };
    Err(PropagationError::NotPropagating {
        path: host_path.into(),
        point: point.to_string(),
        kind,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /srv rw,relatime - tmpfs tmpfs rw
31 22 0:26 / /mnt/slave rw,relatime master:7 - tmpfs tmpfs rw
32 30 0:27 / /srv/shared rw,relatime shared:9 master:3 - tmpfs tmpfs rw
";

    #[test]
    fn propagation_needs_a_cooperating_host_mount() {
        let bi = MountPropagation::PropagationBidirectional as i32;
        let h2c = MountPropagation::PropagationHostToContainer as i32;
        let private = MountPropagation::PropagationPrivate as i32;
        assert!(check(MOUNTINFO, Path::new("/var/lib/x"), bi).is_ok());
        assert!(check(MOUNTINFO, Path::new("/srv/shared/a"), bi).is_ok());
        assert!(check(MOUNTINFO, Path::new("/mnt/slave/a"), h2c).is_ok());
        assert!(check(MOUNTINFO, Path::new("/srv/sharedx"), private).is_ok());
        // /srv/sharedx is on /srv (private), not /srv/shared.
        let err = check(MOUNTINFO, Path::new("/srv/sharedx"), h2c)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mount /srv,") && err.contains("host-to-container"),
            "{err}"
        );
        let err = check(MOUNTINFO, Path::new("/mnt/slave/a"), bi)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/mnt/slave") && err.contains("not a shared mount"),
            "{err}"
        );
        assert!(check("", Path::new("/a"), bi).is_err());
    }
}
