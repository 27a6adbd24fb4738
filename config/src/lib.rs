//! The crio.conf model.
//!
//! Tables and key names are CRI-O's (`[crio]`, `[crio.api]`, `[crio.runtime]`,
//! `[crio.image]`, `[crio.network]`, `[crio.metrics]`, `[crio.tracing]`,
//! `[crio.stats]`), so an operator's existing crio.conf loads. Keys we do not
//! know are warnings, never errors; wrong types and impossible values are
//! errors that name the file, the key and the reason.
#![deny(unsafe_code)]

mod duration;
mod load;
mod render;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use duration::{DurationError, format_duration, parse_duration};
pub use load::{Loaded, Origins, Warning, load, load_from_tables};
pub use render::{Entry, entries, render};
pub use validate::{
    KNOWN_CAPABILITIES, find_on_path, host_platform, parse_ulimit, resolve_runtimes, validate,
};

/// Default location of the main configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/crio/crio.conf";
/// Default directory of drop-in configuration files.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/crio/crio.conf.d";

/// A configuration error: which file (or flag) set which key, and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {key}: {reason}")]
pub struct ConfigError {
    /// The file path, `command line` or `defaults`.
    pub source_name: String,
    /// The dotted key, e.g. `crio.runtime.cgroup_manager`.
    pub key: String,
    /// What is wrong with the value.
    pub reason: String,
}

/// The whole configuration: the `[crio]` table and its sub-tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct File {
    /// The `[crio]` table.
    pub crio: Config,
}

/// `[crio]`: storage locations and the sub-tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Persistent state: images, layers, container upper dirs, records.
    pub root: PathBuf,
    /// Volatile state: sockets, bundles, pinned namespaces, exit files.
    pub runroot: PathBuf,
    /// Storage driver; only `overlay` is supported.
    pub storage_driver: String,
    /// Driver options, `driver.key=value`.
    pub storage_option: Vec<String>,
    /// Default directory for container logs when kubelet gives none.
    pub log_dir: PathBuf,
    /// Version file under the runroot: missing after a reboot.
    pub version_file: PathBuf,
    /// Version file that survives reboots (upgrade detection).
    pub version_file_persist: PathBuf,
    /// Marker written at a clean shutdown; missing means the last stop was unclean.
    pub clean_shutdown_file: PathBuf,
    /// `[crio.api]`.
    pub api: ApiConfig,
    /// `[crio.runtime]`.
    pub runtime: RuntimeConfig,
    /// `[crio.image]`.
    pub image: ImageConfig,
    /// `[crio.network]`.
    pub network: NetworkConfig,
    /// `[crio.metrics]`.
    pub metrics: MetricsConfig,
    /// `[crio.tracing]`.
    pub tracing: TracingConfig,
    /// `[crio.stats]`.
    pub stats: StatsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: "/var/lib/crio".into(),
            runroot: "/run/crio".into(),
            storage_driver: "overlay".into(),
            storage_option: Vec::new(),
            log_dir: "/var/log/crio/pods".into(),
            version_file: "/run/crio/version".into(),
            version_file_persist: PathBuf::new(),
            clean_shutdown_file: "/var/lib/crio/clean.shutdown".into(),
            api: ApiConfig::default(),
            runtime: RuntimeConfig::default(),
            image: ImageConfig::default(),
            network: NetworkConfig::default(),
            metrics: MetricsConfig::default(),
            tracing: TracingConfig::default(),
            stats: StatsConfig::default(),
        }
    }
}

/// `[crio.api]`: the CRI socket and the streaming server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    /// Path of the CRI unix socket.
    pub listen: PathBuf,
    /// Address the streaming server binds to.
    pub stream_address: String,
    /// Port of the streaming server; "0" picks a free port.
    pub stream_port: String,
    /// Serve streaming over TLS.
    pub stream_enable_tls: bool,
    /// Certificate for the streaming server.
    pub stream_tls_cert: PathBuf,
    /// Key for the streaming server.
    pub stream_tls_key: PathBuf,
    /// CA that client certificates must chain to.
    pub stream_tls_ca: PathBuf,
    /// Idle streaming sessions are closed after this long ("" = 4h, as CRI-O).
    pub stream_idle_timeout: String,
    /// Largest gRPC message the daemon sends.
    pub grpc_max_send_msg_size: u64,
    /// Largest gRPC message the daemon accepts.
    pub grpc_max_recv_msg_size: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "/run/crio/crio.sock".into(),
            stream_address: "127.0.0.1".into(),
            stream_port: "0".into(),
            stream_enable_tls: false,
            stream_tls_cert: PathBuf::new(),
            stream_tls_key: PathBuf::new(),
            stream_tls_ca: PathBuf::new(),
            stream_idle_timeout: String::new(),
            grpc_max_send_msg_size: 80 * 1024 * 1024,
            grpc_max_recv_msg_size: 80 * 1024 * 1024,
        }
    }
}

/// `[crio.runtime]`: runtime handlers and container defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeConfig {
    /// Handler used when a pod names none.
    pub default_runtime: String,
    /// Log level of the daemon: trace, debug, info, warn, error (fatal and panic map to error).
    pub log_level: String,
    /// Only log lines whose message matches this regular expression
    /// ("" = all), as CRI-O's `log_filter`.
    pub log_filter: String,
    /// Format of the daemon's and the shims' logs: "text" or "json".
    pub log_format: String,
    /// `cgroupfs` or `systemd`.
    pub cgroup_manager: String,
    /// Capabilities a non-privileged container gets unless it drops them.
    pub default_capabilities: Vec<String>,
    /// Sysctls applied to every pod, `key=value`.
    pub default_sysctls: Vec<String>,
    /// Ulimits applied to every container, `name=soft:hard`.
    pub default_ulimits: Vec<String>,
    /// Environment added to every container, `KEY=value`.
    pub default_env: Vec<String>,
    /// Path of the seccomp profile used for RuntimeDefault ("" = built-in).
    pub seccomp_profile: PathBuf,
    /// AppArmor profile used for RuntimeDefault.
    pub apparmor_profile: String,
    /// Enable SELinux labelling.
    pub selinux: bool,
    /// Default pids limit of a container (-1 or 0 = none).
    pub pids_limit: i64,
    /// Where network, IPC and UTS namespaces are pinned.
    pub namespaces_dir: PathBuf,
    /// Run pods without an infra container unless they share a PID namespace.
    pub drop_infra_ctr: bool,
    /// Default stop timeout of a container, seconds.
    pub ctr_stop_timeout: i64,
    /// OCI hooks directories.
    pub hooks_dir: Vec<PathBuf>,
    /// Largest container log file, bytes (negative: none); the shim empties
    /// the file before a line that would pass it, as CRI-O's conmon does.
    pub log_size_max: i64,
    /// Never give a container an oom_score_adj below the daemon's own.
    pub restrict_oom_score_adj: bool,
    /// Runtime handlers by name (`[crio.runtime.runtimes.NAME]`).
    pub runtimes: BTreeMap<String, RuntimeHandler>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert("runc".to_string(), RuntimeHandler::named("runc"));
        runtimes.insert("crun".to_string(), RuntimeHandler::named("crun"));
        Self {
            default_runtime: "runc".into(),
            log_level: "info".into(),
            log_filter: String::new(),
            log_format: "text".into(),
            cgroup_manager: "cgroupfs".into(),
            default_capabilities: [
                "CHOWN",
                "DAC_OVERRIDE",
                "FSETID",
                "FOWNER",
                "SETGID",
                "SETUID",
                "SETPCAP",
                "NET_BIND_SERVICE",
                "KILL",
            ]
            .map(String::from)
            .to_vec(),
            default_sysctls: Vec::new(),
            default_ulimits: Vec::new(),
            default_env: Vec::new(),
            seccomp_profile: PathBuf::new(),
            apparmor_profile: "crio-default".into(),
            selinux: false,
            pids_limit: -1,
            namespaces_dir: "/var/run".into(),
            drop_infra_ctr: true,
            ctr_stop_timeout: 30,
            hooks_dir: vec!["/usr/share/containers/oci/hooks.d".into()],
            log_size_max: -1,
            restrict_oom_score_adj: true,
            runtimes,
        }
    }
}

/// `[crio.runtime.runtimes.NAME]`: one runtime handler (a Kubernetes
/// RuntimeClass's handler), as in CRI-O.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RuntimeHandler {
    /// `oci`: the OCI runtime binary our shim runs; `vm`: the containerd
    /// shim v2 binary started for each pod. "" means the handler's name
    /// looked up on PATH.
    pub runtime_path: PathBuf,
    /// `oci` (our shim runs the OCI runtime) or `vm` (`runtime_path` is a
    /// containerd shim v2, started the shim v2 way); "" is `oci`.
    pub runtime_type: String,
    /// The runtime's `--root` state directory.
    pub runtime_root: PathBuf,
    /// Runtime configuration file passed to VM runtimes ("" = none).
    pub runtime_config_path: PathBuf,
    /// The pod shim binary of an `oci` handler ("" = next to the daemon,
    /// then PATH).
    pub monitor_path: PathBuf,
    /// Cgroup the pod shims of this handler run in ("" = the pod's).
    pub monitor_cgroup: String,
    /// Environment given to the shim, `KEY=value`.
    pub monitor_env: Vec<String>,
    /// Privileged containers do not get the host's devices.
    pub privileged_without_host_devices: bool,
    /// Annotations this handler may act on.
    pub allowed_annotations: Vec<String>,
    /// Annotations added to every container of this handler that does not
    /// set them itself.
    pub default_annotations: BTreeMap<String, String>,
    /// Runtime binary per platform (`os/arch`, Go names: `linux/amd64`),
    /// used instead of `runtime_path` on that platform.
    pub platform_runtime_paths: BTreeMap<String, PathBuf>,
}

/// The handler kinds `runtime_type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeType {
    /// The OCI runtime runs from crio-rs's pod shim.
    Oci,
    /// `runtime_path` is a containerd shim v2 run for each pod.
    Vm,
}

impl RuntimeHandler {
    /// Its kind (validated: anything but `vm` is `oci`).
    pub fn kind(&self) -> RuntimeType {
        if self.runtime_type == "vm" {
            RuntimeType::Vm
        } else {
            RuntimeType::Oci
        }
    }

    fn named(name: &str) -> Self {
        Self {
            runtime_type: "oci".into(),
            runtime_root: PathBuf::from("/run").join(name),
            monitor_env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ],
            ..Self::default()
        }
    }
}

/// `[crio.image]`: pulling and trusting images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// Transport for references without one.
    pub default_transport: String,
    /// containers-auth.json used when a pull carries no credentials.
    pub global_auth_file: PathBuf,
    /// Image of the infra container, pinned against removal.
    pub pause_image: String,
    /// Credentials for pulling the pause image.
    pub pause_image_auth_file: PathBuf,
    /// Command of the infra container.
    pub pause_command: String,
    /// containers-policy.json ("" = /etc/containers/policy.json).
    pub signature_policy: PathBuf,
    /// containers-registries.conf(5) file.
    pub registries_conf: PathBuf,
    /// Registries reached over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<String>,
    /// Image VOLUMEs: `mkdir`, `bind` or `ignore`.
    pub image_volumes: String,
    /// A pull that makes no progress this long is cancelled ("0s" = never).
    pub pull_progress_timeout: String,
    /// Temporary directory for large downloads ("" = none needed).
    pub big_files_temporary_dir: PathBuf,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            default_transport: "docker://".into(),
            global_auth_file: PathBuf::new(),
            pause_image: "registry.k8s.io/pause:3.10".into(),
            pause_image_auth_file: PathBuf::new(),
            pause_command: "/pause".into(),
            signature_policy: PathBuf::new(),
            registries_conf: "/etc/containers/registries.conf".into(),
            insecure_registries: Vec::new(),
            image_volumes: "mkdir".into(),
            pull_progress_timeout: "0s".into(),
            big_files_temporary_dir: PathBuf::new(),
        }
    }
}

/// `[crio.network]`: CNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// CNI network to use ("" = the first valid config in `network_dir`).
    pub cni_default_network: String,
    /// Directory of CNI configuration files.
    pub network_dir: PathBuf,
    /// Directories searched for CNI plugin binaries.
    pub plugin_dirs: Vec<PathBuf>,
    /// How long one CNI plugin may run before it is killed and its call
    /// fails (a crio-rs key: CRI-O has no per-plugin deadline).
    pub plugin_timeout: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            cni_default_network: String::new(),
            network_dir: "/etc/cni/net.d/".into(),
            plugin_dirs: vec!["/opt/cni/bin/".into(), "/usr/lib/cni/".into()],
            plugin_timeout: "2m".into(),
        }
    }
}

/// `[crio.metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Serve metrics.
    pub enable_metrics: bool,
    /// Which collectors to enable (empty = all).
    pub metrics_collectors: Vec<String>,
    /// Address the metrics server binds to.
    pub metrics_host: String,
    /// Port of the metrics server.
    pub metrics_port: u16,
    /// Serve metrics on this unix socket too ("" = no).
    pub metrics_socket: PathBuf,
    /// TLS certificate of the metrics server.
    pub metrics_cert: PathBuf,
    /// TLS key of the metrics server.
    pub metrics_key: PathBuf,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enable_metrics: false,
            metrics_collectors: Vec::new(),
            metrics_host: "127.0.0.1".into(),
            metrics_port: 9090,
            metrics_socket: PathBuf::new(),
            metrics_cert: PathBuf::new(),
            metrics_key: PathBuf::new(),
        }
    }
}

/// `[crio.tracing]`: OpenTelemetry export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracingConfig {
    /// Export trace spans over OTLP.
    pub enable_tracing: bool,
    /// OTLP gRPC endpoint, `host:port` (plain HTTP/2, no TLS).
    pub tracing_endpoint: String,
    /// Traces sampled per million: 0 samples none, even those the caller
    /// sampled; otherwise the caller's `traceparent` decides, and traces
    /// begun here are sampled at this rate.
    pub tracing_sampling_rate_per_million: u32,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enable_tracing: false,
            tracing_endpoint: "0.0.0.0:4317".into(),
            tracing_sampling_rate_per_million: 0,
        }
    }
}

/// `[crio.stats]`: how stats are collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StatsConfig {
    /// Seconds between background stats collections (0 = on demand).
    pub stats_collection_period: u64,
    /// Seconds between background collections of all stats (0 = on demand).
    pub collection_period: u64,
    /// Groups of ListPodSandboxMetrics (CRI-O's names: `cpu`, `memory`,
    /// `network`, … or `all` alone); empty: only `container_last_seen`.
    pub included_pod_metrics: Vec<String>,
}

/// CRI-O's groups of pod metrics (`included_pod_metrics`).
pub const POD_METRICS_GROUPS: &[&str] = &[
    "cpu", "disk", "diskIO", "hugetlb", "memory", "network", "oom", "process", "spec", "pressure",
];
