//! The container's mounts: the standard filesystems, the pod's files and
//! the request's bind mounts.

use std::path::{Path, PathBuf};

use crio_api::cri::MountPropagation;

use crate::oci::{Mount, mount};
use crate::{Input, SpecError, invalid};

/// Every mount of the container, in order.
pub(crate) fn mounts(input: &Input, privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let shm = input
        .pod
        .shm
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let mut out = standard(privileged, &shm);
    out.extend(pod_files(input));
    for (i, m) in input.config.mounts.iter().enumerate() {
        out.push(requested(i, m)?);
    }
    Ok(out)
}

/// /proc, /dev, /sys and the rest every container has; `shm` is the pod's
/// /dev/shm.
fn standard(privileged: bool, shm: &Path) -> Vec<Mount> {
    let ro_sys = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_sys],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_sys],
        ),
        mount(
            "/dev/shm",
            "bind",
            &shm.display().to_string(),
            &["rbind", "nosuid", "noexec", "nodev"],
        ),
    ]
}

/// The pod's hostname, resolv.conf and hosts, where the request does not
/// mount its own.
fn pod_files(input: &Input) -> Vec<Mount> {
    let requested: Vec<&str> = input
        .config
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    ["hostname", "resolv.conf", "hosts"]
        .into_iter()
        .filter_map(|file| {
            let dest = format!("/etc/{file}");
            (!requested.contains(&dest.as_str())).then(|| {
                let src = input.pod.files_dir.join(file);
                mount(
                    &dest,
                    "bind",
                    &src.display().to_string(),
                    &["rbind", "rprivate", "rw"],
                )
            })
        })
        .collect()
}

/// The bind mount `config.mounts[i]` asks for.
fn requested(i: usize, m: &crio_api::cri::Mount) -> Result<Mount, SpecError> {
    let field = format!("config.mounts[{i}]");
    if !m.container_path.starts_with('/') {
        return Err(invalid(
            &format!("{field}.container_path"),
            format!("{:?} is not an absolute path", m.container_path),
        ));
    }
    if !Path::new(&m.host_path).is_absolute() {
        return Err(invalid(
            &format!("{field}.host_path"),
            format!("{:?} is not an absolute path", m.host_path),
        ));
    }
    if !Path::new(&m.host_path).exists() {
        return Err(SpecError::Missing {
            field: format!("{field}.host_path"),
            reason: format!("{} does not exist", m.host_path),
        });
    }
    let propagation = match MountPropagation::try_from(m.propagation)
        .unwrap_or(MountPropagation::PropagationPrivate)
    {
        MountPropagation::PropagationPrivate => "rprivate",
        MountPropagation::PropagationHostToContainer => "rslave",
        MountPropagation::PropagationBidirectional => "rshared",
    };
    let mut opts = vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }];
    if m.recursive_read_only {
        if !m.readonly {
            return Err(invalid(
                &format!("{field}.recursive_read_only"),
                "needs readonly",
            ));
        }
        if propagation != "rprivate" {
            return Err(invalid(
                &format!("{field}.recursive_read_only"),
                "needs private propagation",
            ));
        }
        opts.push("rro");
    }
    Ok(mount(&m.container_path, "bind", &m.host_path, &opts))
}

/// The rootfs propagation the request's mounts need: shared for a
/// bidirectional mount (so mounts made inside reach the host), slave for a
/// host-to-container one, the runtime's default (None) otherwise.
pub(crate) fn rootfs_propagation(mounts: &[crio_api::cri::Mount]) -> Option<String> {
    let has = |p: MountPropagation| mounts.iter().any(|m| m.propagation == p as i32);
    if has(MountPropagation::PropagationBidirectional) {
        Some("rshared".into())
    } else if has(MountPropagation::PropagationHostToContainer) {
        Some("rslave".into())
    } else {
        None
    }
}
