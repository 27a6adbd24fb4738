//! Containers: the rootfs (an overlay of the image's layers and a fresh
//! upper dir), the OCI bundle (config.json from crio-spec), and the life
//! cycle through the pod's shim. Records live in `root/containers/<id>/`,
//! bundles in `runroot/containers/<id>/`.
//!
//! One file per operation: `store` (records, name reservation), `create`
//! (checks, spec, task), `rootfs` (the overlay, behind a seam), `lifecycle`
//! (start, stop, remove, state), `evidence` (what proves an exit),
//! `monitor` (whether a pod's shim answers), `exec`, `checkpoint`
//! (refused), `infra` (the pod's infra container), `update` (resources,
//! log, metrics), `recover` (loading and the orphan sweep) and `events`
//! (life-cycle events out, shim events in).

mod checkpoint;
mod create;
mod events;
mod evidence;
mod exec;
mod infra;
mod lifecycle;
mod monitor;
mod recover;
mod rootfs;
mod store;
#[cfg(test)]
mod tests;
mod update;
#[cfg(test)]
mod view_tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use crio_api::cri::{ContainerConfig, ContainerMetadata};
use crio_storage::dirs;
use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::images::Images;
use crate::pod::Pods;
use crate::records::Records;
use crate::shim::PodShims;

pub use events::{ContainerEvent, Subject};
pub use evidence::SHIM_LOST;
pub use exec::{Exec, ExecOptions};
pub use monitor::SHIM_NOT_RESPONDING;
pub use rootfs::{Overlays, Prepared, Rootfs, RootfsJob};

/// A container's state as the daemon last knew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Started.
    Running,
    /// Its process has exited.
    Exited,
}

/// What is kept about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container ID.
    pub id: Id,
    /// Its pod.
    pub pod_id: Id,
    /// The reserved name.
    pub name: String,
    /// The kubelet's request.
    pub config: ContainerConfig,
    /// The image ID.
    pub image_id: String,
    /// The image reference it was created from.
    pub image_ref: String,
    /// Times, CRI nanoseconds (0 = not yet).
    pub created_at: i64,
    /// Start time.
    pub started_at: i64,
    /// Exit time.
    pub finished_at: i64,
    /// Exit code.
    pub exit_code: i32,
    /// State.
    pub state: ContainerState,
    /// Killed for exceeding its memory limit.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the state is what it is, when that needs saying.
    #[serde(default)]
    pub message: String,
    /// The log file.
    pub log_path: String,
    /// The signal that stops it (the image's StopSignal; 0: SIGTERM).
    #[serde(default)]
    pub stop_signal: u32,
    /// The pod's infra container (holds a shared PID namespace; not listed).
    #[serde(default)]
    pub infra: bool,
    /// The identity its process runs with (from the OCI spec).
    #[serde(default)]
    pub user: Option<crio_spec::oci::User>,
    /// Its init's pid once started (0 before).
    #[serde(default)]
    pub pid: u32,
    /// When its init started (`/proc/<pid>/stat`, clock ticks since boot;
    /// 0: unknown): another process later given the same pid is not it.
    #[serde(default)]
    pub pid_start: u64,
    /// The CRI reason of an exit the usual ones do not describe (its
    /// monitor lost); empty otherwise.
    #[serde(default)]
    pub reason: String,
    /// Its pod's shim died while it ran: no shim monitors it any more (a
    /// new shim of the pod does not know it).
    #[serde(default)]
    pub orphaned: bool,
}

impl ContainerRecord {
    /// Metadata.
    pub fn metadata(&self) -> ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }
}

/// What containers are made with and run through.
pub struct Collaborators {
    /// The pods (a container's pod must be ready).
    pub pods: Arc<Pods>,
    /// The images (a container's rootfs comes from one).
    pub images: Arc<Images>,
    /// The pods' shims, which run the containers.
    pub shims: Arc<dyn PodShims>,
    /// Makes and releases root filesystems.
    pub rootfs: Arc<dyn Rootfs>,
}

/// The containers of this daemon.
pub struct Containers {
    /// Names of creates under way.
    pending: store::Pending,
    /// One lock per container: calls on the same container run one at a
    /// time, calls on different ones in parallel.
    locks: crate::records::Locks,
    records_dir: PathBuf,
    run_dir: PathBuf,
    records: Records<ContainerRecord>,
    /// Life-cycle events, for GetContainerEvents.
    events: events::Events,
    /// Pods whose shim did not answer the last call made to it.
    silent: monitor::Silent,
    host: crio_spec::Host,
    /// The spec defaults (a SIGHUP reload replaces the seccomp and
    /// AppArmor profiles).
    defaults: parking_lot::RwLock<Arc<crio_spec::Defaults>>,
    /// `log_size_max`: the shim keeps each container's CRI log at or under
    /// it (≤ 0: no limit).
    log_size_max: i64,
    /// The pause image and its credentials, for infra containers (a
    /// SIGHUP reload replaces it).
    image_config: parking_lot::RwLock<crio_config::ImageConfig>,
    pods: Arc<Pods>,
    images: Arc<Images>,
    shims: Arc<dyn PodShims>,
    rootfs: Arc<dyn Rootfs>,
}

/// The security modules containers get: the host's, SELinux only when the
/// `selinux` option asks for it.
pub fn host_lsm(config: &crio_config::Config) -> crio_spec::lsm::Lsm {
    let mut lsm = crio_spec::lsm::Lsm::detect(Path::new("/sys"));
    lsm.selinux &= config.runtime.selinux;
    lsm
}

/// The capabilities this process may grant (its bounding set).
fn bounding_set() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    crio_config::KNOWN_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// What the host gives every container's spec.
fn host(config: &crio_config::Config) -> crio_spec::Host {
    crio_spec::Host {
        bounding: bounding_set(),
        min_oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        devices: crio_spec::devices::host_devices(Path::new("/dev")),
        lsm: host_lsm(config),
        ..Default::default()
    }
}

/// The configured defaults of every container's spec.
fn defaults(config: &crio_config::Config) -> anyhow::Result<crio_spec::Defaults> {
    let rt = &config.runtime;
    Ok(crio_spec::Defaults {
        capabilities: rt.default_capabilities.clone(),
        env: rt.default_env.clone(),
        ulimits: rt
            .default_ulimits
            .iter()
            .filter_map(|u| crio_config::parse_ulimit(u))
            .collect(),
        pids_limit: rt.pids_limit,
        seccomp_default: crio_spec::seccomp::Profile::configured(&rt.seccomp_profile)?,
        systemd_cgroups: rt.cgroup_manager == "systemd",
        image_volumes: config.image.image_volumes.clone(),
        apparmor_profile: rt.apparmor_profile.clone(),
    })
}

impl Containers {
    /// Replaces the default seccomp profile (`None`: runc's own default
    /// set) and AppArmor profile of containers created from now on.
    pub fn set_security_profiles(
        &self,
        seccomp: Option<crio_spec::seccomp::Profile>,
        apparmor: String,
    ) {
        let mut defaults = self.defaults.write();
        let mut new = crio_spec::Defaults::clone(&defaults);
        new.seccomp_default = seccomp;
        new.apparmor_profile = apparmor;
        *defaults = Arc::new(new);
    }
}

impl Containers {
    /// Loads the records under `root/containers` and removes what a crash
    /// left of containers without one.
    pub fn open(config: &crio_config::Config, with: Collaborators) -> anyhow::Result<Self> {
        let records_dir = config.root.join("containers");
        let run_dir = config.runroot.join("containers");
        for d in [&records_dir, &run_dir] {
            dirs::ensure(d, dirs::PRIVATE).with_context(|| format!("create {}", d.display()))?;
        }
        let records = recover::load(&records_dir)?;
        recover::sweep_orphans(config, &records_dir, &run_dir, &records, &*with.rootfs);
        Ok(Self {
            pending: Default::default(),
            locks: Default::default(),
            records_dir,
            run_dir,
            events: events::publisher(&records, &with.pods),
            records: Records::new(records),
            silent: Default::default(),
            host: host(config),
            defaults: parking_lot::RwLock::new(Arc::new(defaults(config)?)),
            log_size_max: config.runtime.log_size_max,
            image_config: parking_lot::RwLock::new(config.image.clone()),
            pods: with.pods,
            images: with.images,
            shims: with.shims,
            rootfs: with.rootfs,
        })
    }

    /// Whether containers can run at all (a shim binary was found).
    pub fn runnable(&self) -> crate::error::Result<()> {
        Ok(self.shims.check()?)
    }

    /// The attach socket of a container's process (`exec_id` "" for its
    /// init), which its shim serves.
    pub fn attach_socket(&self, id: &str, exec_id: &str) -> PathBuf {
        crio_attach::attach_path(self.shims.socket_dir(), id, exec_id)
    }
}
