//! Pod sandboxes: their records, name reservations, namespaces, network and
//! files. Each RunPodSandbox runs in a task of its own, so a kubelet that
//! gives up waiting never leaves a half-made pod: the task finishes or rolls
//! back, and a retry with the same name gets the same pod.
//!
//! One file per operation: `store` (records, names), `run` (RunPodSandbox's
//! steps and rollback), `network` (CNI), `stop` (stop, remove), `recover`
//! (what a crash left), `files` (hostname, resolv.conf, hosts), and
//! `sandbox` (a pod with its containers: infra rollback, stop order).

mod files;
mod network;
mod recover;
mod run;
mod sandbox;
mod stop;
mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use crio_api::cri::{NamespaceMode, PodSandboxConfig, PodSandboxMetadata};
use crio_config::Config;
use crio_network::netns::Kind;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::handlers::{Handler, Handlers};
use crate::ids::Id;
use crate::records::{Locks, Records};
use crate::shim::PodShims;

pub use sandbox::Sandboxes;

/// A pod's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    /// Namespaces and network up.
    Ready,
    /// Stopped: network torn down, containers stopped.
    NotReady,
}

/// What is kept about a pod, on disk under `root/pods/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    /// The sandbox ID.
    pub id: Id,
    /// The reserved name.
    pub name: String,
    /// The kubelet's configuration, as given.
    pub config: PodSandboxConfig,
    /// The runtime handler.
    pub runtime_handler: String,
    /// Creation time, CRI nanoseconds.
    pub created_at: i64,
    /// Lifecycle state.
    pub state: PodState,
    /// Namespaces the pod owns (pinned under namespaces_dir).
    pub namespaces: Vec<String>,
    /// The CNI network it joined, and the ADD result (for DEL after a restart).
    pub network: Option<(String, Value)>,
    /// Its IPs, IPv4 first.
    pub ips: Vec<String>,
    /// The pod's /dev/shm, when it has its own.
    pub shm: Option<PathBuf>,
}

impl PodRecord {
    /// The kinds of namespace the pod owns.
    pub fn kinds(&self) -> Vec<Kind> {
        self.namespaces
            .iter()
            .filter_map(|k| Kind::parse(k))
            .collect()
    }

    /// The pod's metadata.
    pub fn metadata(&self) -> PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// Whether its containers share one PID namespace (held by an infra
    /// container): the pod's PID mode is POD.
    pub fn shares_pid(&self) -> bool {
        self.namespace_options().pid == NamespaceMode::Pod as i32
    }

    /// The kubelet's cgroup parent of the pod ("" when none).
    pub fn cgroup_parent(&self) -> String {
        self.config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default()
    }

    /// Namespace options as requested.
    pub fn namespace_options(&self) -> crio_api::cri::NamespaceOption {
        namespace_options(&self.config)
    }
}

fn namespace_options(config: &PodSandboxConfig) -> crio_api::cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// The pods of this daemon.
pub struct Pods {
    config: Config,
    records_dir: PathBuf,
    /// Pods being made: what RunPodSandbox has done so far, so a crash
    /// mid-way is rolled back at the next start.
    pending_dir: PathBuf,
    run_dir: PathBuf,
    records: Records<PodRecord>,
    reservations: Mutex<HashMap<String, store::Reservation>>,
    locks: Locks,
    pod_cidrs: Mutex<Vec<String>>,
    /// The pod shims: a pod's is started while its network is made.
    shims: Arc<dyn PodShims>,
    /// The runtime handlers pods may ask for.
    handlers: Arc<Handlers>,
}

/// A fresh 64-hex-digit ID.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !ok {
        let t = crio_api::time::now_nanos().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = t[i % 8] ^ (i as u8).wrapping_mul(151) ^ (std::process::id() as u8);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The reserved name of a pod: CRI-O's `k8s_NAME_NAMESPACE_UID_ATTEMPT`.
pub fn pod_name(md: &PodSandboxMetadata) -> String {
    format!("k8s_{}_{}_{}_{}", md.name, md.namespace, md.uid, md.attempt)
}

impl Pods {
    /// Loads the pod records under `root/pods` and reserves their names;
    /// new pods get their shims from `shims`, of one of `handlers`.
    pub fn open(
        config: &Config,
        shims: Arc<dyn PodShims>,
        handlers: Arc<Handlers>,
    ) -> anyhow::Result<Self> {
        let records_dir = config.root.join("pods");
        let pending_dir = config.root.join("pods-pending");
        let run_dir = config.runroot.join("pods");
        // Only root enters: the pods' files and their /dev/shm are reached
        // by containers through their bind mounts, not by path.
        for d in [&records_dir, &pending_dir, &run_dir] {
            crio_storage::dirs::ensure(d, crio_storage::dirs::PRIVATE)
                .with_context(|| format!("create {}", d.display()))?;
        }
        let (records, reservations) = recover::load(&records_dir, &run_dir)?;
        Ok(Self {
            config: config.clone(),
            records_dir,
            pending_dir,
            run_dir,
            records: Records::new(records),
            reservations: Mutex::new(reservations),
            locks: Locks::default(),
            pod_cidrs: Mutex::default(),
            shims,
            handlers,
        })
    }

    /// The runtime handler pod `pod` runs under (None: no longer
    /// configured).
    pub fn handler_of(&self, pod: &PodRecord) -> Option<&Handler> {
        self.handlers.get(&pod.runtime_handler)
    }

    /// Where pod namespaces are pinned.
    pub fn namespaces_dir(&self) -> PathBuf {
        self.config.runtime.namespaces_dir.clone()
    }

    /// The volatile directory of a pod.
    pub fn run_dir(&self, id: &Id) -> PathBuf {
        self.run_dir.join(id.as_str())
    }
}

#[cfg(test)]
mod tests;
