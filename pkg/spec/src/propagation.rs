//! Mount propagation needs the host side to cooperate: a bidirectional
//! mount's source must sit on a shared mount, a host-to-container one's on
//! a shared or slave mount, or nothing would propagate. Checked against
//! `/proc/self/mountinfo` as CRI-O does.

use std::path::Path;

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

/// Refuses a propagation the host mount of `host_path` cannot give,
/// naming the mount point.
pub fn check(mountinfo: &str, host_path: &Path, propagation: i32) -> Result<(), String> {
    let mode =
        MountPropagation::try_from(propagation).unwrap_or(MountPropagation::PropagationPrivate);
    let needs: &[&str] = match mode {
        MountPropagation::PropagationPrivate => return Ok(()),
        MountPropagation::PropagationHostToContainer => &["shared:", "master:"],
        MountPropagation::PropagationBidirectional => &["shared:"],
    };
    let Some((point, optional)) = mount_of(mountinfo, host_path) else {
        return Err(format!("{} is on no mount", host_path.display()));
    };
    if optional
        .iter()
        .any(|o| needs.iter().any(|n| o.starts_with(n)))
    {
        return Ok(());
    }
    let kind = if needs.len() == 1 {
        "a shared"
    } else {
        "a shared or slave"
    };
    Err(format!(
        "{} is on the mount {point}, which is not {kind} mount: {} propagation needs one (mount --make-rshared {point})",
        host_path.display(),
        if needs.len() == 1 {
            "bidirectional"
        } else {
            "host-to-container"
        }
    ))
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
        let err = check(MOUNTINFO, Path::new("/srv/sharedx"), h2c).unwrap_err();
        assert!(
            err.contains("mount /srv,") && err.contains("host-to-container"),
            "{err}"
        );
        let err = check(MOUNTINFO, Path::new("/mnt/slave/a"), bi).unwrap_err();
        assert!(
            err.contains("/mnt/slave") && err.contains("not a shared mount"),
            "{err}"
        );
        assert!(check("", Path::new("/a"), bi).is_err());
    }
}
