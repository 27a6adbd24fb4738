//! The OCI runtime spec of a container, made from its CRI config, its
//! image's config and its pod, the Kubernetes way. Pure functions: what the
//! host is (capability bounding set, oom_score_adj, the image's users) comes
//! in through [`Host`], so all of it is unit-tested without root.
#![deny(unsafe_code)]

mod build;
pub mod devices;
mod image;
pub mod lsm;
mod mounts;
pub mod oci;
mod process;
pub mod propagation;
mod resources;
pub mod seccomp;
pub mod user;

use std::path::{Path, PathBuf};

use crio_api::cri::{ContainerConfig, PodSandboxConfig};

pub use build::build;
pub use image::{argv, environment, image_volumes, stop_signal};
/// The runtime part of an image's configuration (`config` of the image
/// config document: Env, Entrypoint, Cmd, User, WorkingDir, Volumes,
/// StopSignal...).
pub use oci_spec::image::Config as ImageConfig;
pub use process::{capabilities, process_user};
pub use resources::resources_of;

/// Why a spec cannot be made; each names the CRI field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A request field is wrong (InvalidArgument at the CRI).
    #[error("{field}: {reason}")]
    Invalid {
        /// The CRI field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Something named by the request does not exist (NotFound).
    #[error("{field}: {reason}")]
    Missing {
        /// The CRI field.
        field: String,
        /// What is missing.
        reason: String,
    },
}

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The daemon's configuration that shapes every container.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// `default_capabilities`.
    pub capabilities: Vec<String>,
    /// `default_env`.
    pub env: Vec<String>,
    /// `default_ulimits`, parsed: (name, soft, hard).
    pub ulimits: Vec<(String, i64, i64)>,
    /// `pids_limit` (≤ 0: none).
    pub pids_limit: i64,
    /// The RuntimeDefault seccomp profile from `seccomp_profile` (None: the
    /// built-in one).
    pub seccomp_default: Option<seccomp::Profile>,
    /// `cgroup_manager` is systemd.
    pub systemd_cgroups: bool,
    /// `image_volumes`: mkdir, bind or ignore.
    pub image_volumes: String,
    /// `apparmor_profile`: the RuntimeDefault AppArmor profile.
    pub apparmor_profile: String,
}

/// Facts about the host and the image.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Capabilities the daemon itself may grant (its bounding set).
    pub bounding: Vec<String>,
    /// The daemon's own oom_score_adj: nothing below it is allowed.
    pub min_oom_score_adj: i64,
    /// The image's /etc/passwd.
    pub passwd: String,
    /// The image's /etc/group.
    pub group: String,
    /// The security modules the host has (SELinux only when the `selinux`
    /// option asks for it too).
    pub lsm: lsm::Lsm,
    /// Host devices for privileged containers: (path, kind, major, minor).
    pub devices: Vec<(String, oci::LinuxDeviceType, i64, i64)>,
}

/// The pod a container joins.
#[derive(Debug, Clone)]
pub struct Pod<'a> {
    /// Its configuration.
    pub config: &'a PodSandboxConfig,
    /// Its hostname, resolv.conf and hosts files.
    pub files_dir: PathBuf,
    /// Its /dev/shm (None: the host's).
    pub shm: Option<PathBuf>,
    /// Pinned namespaces: net, ipc, uts (None: the host's).
    pub netns: Option<PathBuf>,
    /// IPC namespace.
    pub ipcns: Option<PathBuf>,
    /// UTS namespace.
    pub utsns: Option<PathBuf>,
    /// The PID namespace a POD or TARGET container joins: the pod's (its
    /// infra process), or the target container's.
    pub pidns: Option<PathBuf>,
    /// Cgroup parent.
    pub cgroup_parent: String,
    /// The pod's user namespace (None: the host's).
    pub userns: Option<UserNs>,
}

/// A pod's pinned user namespace and its one ID map (the same for UIDs and
/// GIDs, from container ID 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNs {
    /// Where it is pinned.
    pub path: PathBuf,
    /// The host ID of container ID 0.
    pub host_id: u32,
    /// How many IDs are mapped.
    pub length: u32,
}

/// Everything a spec is made from.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Container ID.
    pub id: &'a str,
    /// The CRI request.
    pub config: &'a ContainerConfig,
    /// The image's runtime configuration.
    pub image: &'a ImageConfig,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The pod.
    pub pod: Pod<'a>,
    /// Daemon defaults.
    pub defaults: &'a Defaults,
    /// Host facts.
    pub host: &'a Host,
}

/// Paths masked from non-privileged containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths read-only in non-privileged containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[cfg(test)]
mod tests;
