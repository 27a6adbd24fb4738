//! The subset of the OCI runtime specification (config.json) crio-rs writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The OCI runtime spec version written.
pub const OCI_VERSION: &str = "1.0.2";

/// config.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Spec version.
    pub oci_version: String,
    /// The process to run.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// The hostname inside a new UTS namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Mounts in order.
    pub mounts: Vec<Mount>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Linux specifics.
    pub linux: Linux,
}

/// `process`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Allocate a pseudo-terminal.
    pub terminal: bool,
    /// The user.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capability sets.
    pub capabilities: Capabilities,
    /// Resource limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    /// no_new_privs.
    pub no_new_privileges: bool,
    /// oom_score_adj.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// AppArmor profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
    /// SELinux process label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux_label: Option<String>,
}

/// `process.user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

/// `process.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Inheritable set (kept empty, as runtimes do today).
    pub inheritable: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// One rlimit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE` etc.
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// The rootfs path.
    pub path: String,
    /// Mount it read-only.
    pub readonly: bool,
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Where inside the container.
    pub destination: String,
    /// Filesystem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source.
    pub source: String,
    /// Options.
    pub options: Vec<String>,
}

impl Mount {
    pub(crate) fn new(destination: &str, kind: &str, source: &str, options: &[&str]) -> Self {
        Self {
            destination: destination.into(),
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// `linux`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// Namespaces to create or join.
    pub namespaces: Vec<Namespace>,
    /// Devices to create.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Cgroup path.
    pub cgroups_path: String,
    /// Resources.
    pub resources: Resources,
    /// Sysctls.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Seccomp filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<serde_json::Value>,
    /// Propagation of the root mount.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rootfs_propagation: String,
    /// Paths hidden from the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    /// Paths made read-only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
    /// SELinux label of the container's mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_label: Option<String>,
}

/// One namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// pid, network, ipc, uts, mount…
    #[serde(rename = "type")]
    pub kind: String,
    /// A namespace to join instead of creating one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A device node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Path inside the container.
    pub path: String,
    /// `c` or `b`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Mode.
    pub file_mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// `linux.resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Device cgroup rules.
    pub devices: Vec<DeviceRule>,
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Pids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    /// Hugepage limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hugepage_limits: Vec<Hugepage>,
    /// cgroup v2 keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unified: BTreeMap<String, String>,
}

/// A device cgroup rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Allow or deny.
    pub allow: bool,
    /// `a`, `c` or `b`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Major.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// Minor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// `rwm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

/// Memory limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Memory plus swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
}

/// CPU limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    /// Quota per period, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    /// Period, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    /// cpuset CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// cpuset memory nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mems: Option<String>,
}

/// Pids limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    /// Maximum number of tasks.
    pub limit: i64,
}

/// A hugepage limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hugepage {
    /// `2MB`, `1GB`.
    pub page_size: String,
    /// Bytes.
    pub limit: u64,
}
