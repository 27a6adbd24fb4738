//! `crio config`: the configuration as commented TOML that loads back unchanged.

use std::fmt::Write;

use toml::{Table, Value};

use crate::{Config, File};

/// What each key is for, shown above it; `*` stands for a runtime handler's name.
const DOCS: &[(&str, &str)] = &[
    (
        "crio",
        "crio-rs configuration (CRI-O's crio.conf tables and keys).",
    ),
    (
        "crio.root",
        "Persistent state: images, layers, container upper dirs, records.",
    ),
    (
        "crio.runroot",
        "Volatile state: socket, bundles, shim sockets, exit files.",
    ),
    (
        "crio.storage_driver",
        "Storage driver; only overlay is supported.",
    ),
    ("crio.storage_option", "Storage driver options."),
    ("crio.log_dir", "Default directory for container logs."),
    (
        "crio.version_file",
        "Version file in volatile storage; missing after a reboot.",
    ),
    (
        "crio.version_file_persist",
        "Version file that survives reboots (\"\" = none).",
    ),
    (
        "crio.clean_shutdown_file",
        "Written at a clean shutdown; missing means an unclean stop.",
    ),
    ("crio.api", "The CRI socket and the streaming server."),
    ("crio.api.listen", "Path of the CRI gRPC unix socket."),
    (
        "crio.api.stream_address",
        "IP address the streaming server binds to.",
    ),
    (
        "crio.api.stream_port",
        "Port of the streaming server; \"0\" picks a free one.",
    ),
    (
        "crio.api.stream_enable_tls",
        "Serve exec, attach and port-forward over TLS.",
    ),
    (
        "crio.api.stream_tls_cert",
        "Certificate of the streaming server (reloaded on change).",
    ),
    (
        "crio.api.stream_tls_key",
        "Key of the streaming server (reloaded on change).",
    ),
    (
        "crio.api.stream_tls_ca",
        "CA that streaming clients' certificates must chain to.",
    ),
    (
        "crio.api.stream_idle_timeout",
        "Close idle streaming sessions after this long (\"\" = 4h).",
    ),
    (
        "crio.api.grpc_max_send_msg_size",
        "Largest gRPC message sent, bytes.",
    ),
    (
        "crio.api.grpc_max_recv_msg_size",
        "Largest gRPC message accepted, bytes.",
    ),
    ("crio.runtime", "OCI runtimes and container defaults."),
    (
        "crio.runtime.default_runtime",
        "Runtime handler used when a pod names none.",
    ),
    (
        "crio.runtime.log_level",
        "trace, debug, info, warn or error.",
    ),
    (
        "crio.runtime.log_filter",
        "Only log lines matching this regular expression (\"\" = all).",
    ),
    (
        "crio.runtime.log_format",
        "text or json, for the daemon and its shims.",
    ),
    ("crio.runtime.cgroup_manager", "cgroupfs or systemd."),
    (
        "crio.runtime.default_capabilities",
        "Capabilities of a container that adds or drops none.",
    ),
    (
        "crio.runtime.default_sysctls",
        "Sysctls set in every pod, key=value.",
    ),
    (
        "crio.runtime.default_ulimits",
        "Ulimits of every container, name=soft:hard.",
    ),
    (
        "crio.runtime.default_env",
        "Environment added to every container, KEY=value.",
    ),
    (
        "crio.runtime.seccomp_profile",
        "Seccomp profile for RuntimeDefault (\"\" = built-in).",
    ),
    (
        "crio.runtime.apparmor_profile",
        "AppArmor profile for RuntimeDefault.",
    ),
    ("crio.runtime.selinux", "Label containers with SELinux."),
    (
        "crio.runtime.pids_limit",
        "Default pids limit of a container (-1 or 0 = none).",
    ),
    (
        "crio.runtime.namespaces_dir",
        "Where pod namespaces are pinned.",
    ),
    (
        "crio.runtime.drop_infra_ctr",
        "No infra container unless the pod shares a PID namespace.",
    ),
    (
        "crio.runtime.ctr_stop_timeout",
        "Default stop timeout of a container, seconds.",
    ),
    ("crio.runtime.hooks_dir", "OCI hooks directories."),
    (
        "crio.runtime.log_size_max",
        "Largest container log file, bytes (negative = no limit, else >= 8192); a line that would pass it empties the file first.",
    ),
    (
        "crio.runtime.restrict_oom_score_adj",
        "Clamp oom_score_adj to the daemon's own.",
    ),
    ("crio.runtime.runtimes", "Runtime handlers, by name."),
    ("crio.runtime.runtimes.*", "A runtime handler."),
    (
        "crio.runtime.runtimes.*.runtime_path",
        "Runtime binary, or the shim v2 binary of a vm handler (\"\" = the handler's name on PATH).",
    ),
    (
        "crio.runtime.runtimes.*.runtime_type",
        "oci (crio-rs's shim runs runtime_path) or vm (runtime_path is a containerd shim v2, one per pod).",
    ),
    (
        "crio.runtime.runtimes.*.runtime_root",
        "The runtime's --root directory.",
    ),
    (
        "crio.runtime.runtimes.*.runtime_config_path",
        "Configuration file of the runtime.",
    ),
    (
        "crio.runtime.runtimes.*.monitor_path",
        "Pod shim binary (\"\" = beside crio, then PATH).",
    ),
    (
        "crio.runtime.runtimes.*.monitor_cgroup",
        "Cgroup of the pod shims (\"\" = the pod's).",
    ),
    (
        "crio.runtime.runtimes.*.monitor_env",
        "Environment of the pod shim.",
    ),
    (
        "crio.runtime.runtimes.*.privileged_without_host_devices",
        "Privileged containers get no host devices.",
    ),
    (
        "crio.runtime.runtimes.*.allowed_annotations",
        "Annotations this handler may act on.",
    ),
    (
        "crio.runtime.runtimes.*.default_annotations",
        "Annotations added to this handler's containers unless they set them.",
    ),
    (
        "crio.runtime.runtimes.*.platform_runtime_paths",
        "Runtime binary per platform (\"linux/amd64\" = path), used instead of runtime_path there.",
    ),
    ("crio.image", "Pulling and trusting images."),
    (
        "crio.image.default_transport",
        "Transport of references that name none.",
    ),
    (
        "crio.image.global_auth_file",
        "containers-auth.json used when a pull brings no credentials.",
    ),
    (
        "crio.image.pause_image",
        "Image of the infra container (pinned).",
    ),
    (
        "crio.image.pause_image_auth_file",
        "Credentials for the pause image.",
    ),
    (
        "crio.image.pause_command",
        "Command of the infra container.",
    ),
    (
        "crio.image.signature_policy",
        "containers-policy.json (\"\" = /etc/containers/policy.json).",
    ),
    (
        "crio.image.registries_conf",
        "containers-registries.conf file.",
    ),
    (
        "crio.image.insecure_registries",
        "Registries reached over plain HTTP or unverified TLS.",
    ),
    (
        "crio.image.image_volumes",
        "Image VOLUMEs: mkdir, bind or ignore.",
    ),
    (
        "crio.image.pull_progress_timeout",
        "Cancel a pull without progress for this long (0s = never).",
    ),
    (
        "crio.image.big_files_temporary_dir",
        "Temporary directory for large downloads.",
    ),
    ("crio.network", "CNI networking."),
    (
        "crio.network.cni_default_network",
        "CNI network to use (\"\" = the first valid one).",
    ),
    (
        "crio.network.network_dir",
        "Directory of CNI configuration files.",
    ),
    (
        "crio.network.plugin_dirs",
        "Directories searched for CNI plugins.",
    ),
    (
        "crio.network.plugin_timeout",
        "Kill a CNI plugin that runs longer than this and fail its call.",
    ),
    ("crio.metrics", "Prometheus metrics."),
    ("crio.metrics.enable_metrics", "Serve metrics."),
    (
        "crio.metrics.metrics_collectors",
        "Enabled collectors (empty = all).",
    ),
    (
        "crio.metrics.metrics_host",
        "Address of the metrics server.",
    ),
    ("crio.metrics.metrics_port", "Port of the metrics server."),
    (
        "crio.metrics.metrics_socket",
        "Also serve metrics on this unix socket.",
    ),
    (
        "crio.metrics.metrics_cert",
        "TLS certificate of the metrics server.",
    ),
    ("crio.metrics.metrics_key", "TLS key of the metrics server."),
    ("crio.tracing", "OpenTelemetry tracing."),
    ("crio.tracing.enable_tracing", "Export spans over OTLP."),
    (
        "crio.tracing.tracing_endpoint",
        "OTLP gRPC endpoint, host:port.",
    ),
    (
        "crio.tracing.tracing_sampling_rate_per_million",
        "Traces sampled per million; 0 samples none, even the caller's.",
    ),
    ("crio.stats", "Stats collection."),
    (
        "crio.stats.stats_collection_period",
        "Seconds between background collections (0 = on demand).",
    ),
    (
        "crio.stats.collection_period",
        "Seconds between background collections of all stats.",
    ),
    (
        "crio.stats.included_pod_metrics",
        "Groups of ListPodSandboxMetrics (cpu, disk, memory, network, oom, process, ... or all).",
    ),
];

fn doc(path: &str) -> Option<&'static str> {
    let generic = match path.strip_prefix("crio.runtime.runtimes.") {
        Some(rest) => match rest.split_once('.') {
            Some((_, key)) => format!("crio.runtime.runtimes.*.{key}"),
            None => "crio.runtime.runtimes.*".to_string(),
        },
        None => path.to_string(),
    };
    DOCS.iter().find(|(k, _)| *k == generic).map(|(_, d)| *d)
}

/// One table or key of a configuration, in the order `crio config` prints
/// them: what crio.conf(5) documents, from the same model and descriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The dotted path, e.g. `crio.api.listen` (handler names quoted as in TOML).
    pub path: String,
    /// A key's name as written in TOML (a table's whole path).
    pub key: String,
    /// What it is for, when documented.
    pub doc: Option<&'static str>,
    /// The key's value in TOML, or `None` for a table.
    pub value: Option<Value>,
}

impl Entry {
    /// The TOML type of a key's value (`table` for a table).
    pub fn type_name(&self) -> &'static str {
        self.value.as_ref().map_or("table", Value::type_str)
    }
}

/// Every table and key of `config` with its description, in file order.
pub fn entries(config: &Config) -> Vec<Entry> {
    let file = File {
        crio: config.clone(),
    };
    let mut out = Vec::new();
    if let Ok(Value::Table(table)) = Value::try_from(&file) {
        walk(&table, "", &mut out);
    }
    out
}

/// Renders `config` as TOML with a comment above every table and key.
pub fn render(config: &Config) -> String {
    let mut out = String::from("# crio-rs configuration. Generated by `crio config`.\n");
    for entry in entries(config) {
        match &entry.value {
            None => {
                out.push('\n');
                if let Some(d) = entry.doc {
                    let _ = writeln!(out, "# {d}");
                }
                let _ = writeln!(out, "[{}]", entry.path);
            }
            Some(value) => {
                if let Some(d) = entry.doc {
                    let _ = writeln!(out, "\n# {d}");
                }
                let _ = writeln!(out, "{} = {value}", entry.key);
            }
        }
    }
    out
}

fn walk(table: &Table, path: &str, out: &mut Vec<Entry>) {
    let (tables, values): (Vec<_>, Vec<_>) = table.iter().partition(|(_, v)| v.is_table());
    if !path.is_empty() && (!values.is_empty() || tables.is_empty()) {
        out.push(Entry {
            path: path.to_string(),
            key: path.to_string(),
            doc: doc(path),
            value: None,
        });
    }
    for (key, value) in values {
        out.push(Entry {
            doc: doc(&format!("{path}.{key}")),
            path: format!("{path}.{}", toml_key(key)),
            key: toml_key(key),
            value: Some(value.clone()),
        });
    }
    for (key, value) in tables {
        if let Value::Table(t) = value {
            let child = if path.is_empty() {
                toml_key(key)
            } else {
                format!("{path}.{}", toml_key(key))
            };
            walk(t, &child, out);
        }
    }
}

/// A key bare when TOML allows, quoted otherwise (runtime handler names are free text).
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_from_tables;

    fn round_trip(config: &Config) -> Config {
        let text = render(config);
        let table: Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let loaded = load_from_tables(vec![("rendered".into(), table)]).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        loaded.config
    }

    #[test]
    fn default_loads_back_unchanged() {
        let config = Config::default();
        assert_eq!(round_trip(&config), config);
        let text = render(&config);
        assert!(
            text.contains("# Path of the CRI gRPC unix socket.\nlisten = \"/run/crio/crio.sock\"")
        );
        assert!(text.contains("[crio.runtime.runtimes.runc]"));
    }

    #[test]
    fn changed_config_loads_back_unchanged() {
        let table: Table = "[crio]\nroot = \"/x\"\n[crio.runtime]\ndefault_runtime = \"my rt\"\n\
            default_ulimits = [\"nofile=1:2\"]\n[crio.runtime.runtimes.\"my rt\"]\n\
            runtime_path = \"/bin/true\"\nmonitor_env = [\"A=b\"]\n[crio.api]\nstream_port = \"10010\"\n"
            .parse()
            .unwrap();
        let config = load_from_tables(vec![("x".into(), table)]).unwrap().config;
        assert_eq!(config.runtime.runtimes.len(), 3);
        assert_eq!(round_trip(&config), config);
    }

    #[test]
    fn entries_are_what_render_prints() {
        let entries = entries(&Config::default());
        let listen = entries
            .iter()
            .find(|e| e.path == "crio.api.listen")
            .unwrap();
        assert_eq!(listen.key, "listen");
        assert_eq!(listen.type_name(), "string");
        assert_eq!(listen.doc, Some("Path of the CRI gRPC unix socket."));
        let runc = entries
            .iter()
            .find(|e| e.path == "crio.runtime.runtimes.runc")
            .unwrap();
        assert_eq!((runc.type_name(), runc.value.is_none()), ("table", true));
        let text = render(&Config::default());
        let keys = text
            .lines()
            .filter(|l| l.contains(" = ") && !l.starts_with('#'));
        let values = entries.iter().filter(|e| e.value.is_some());
        assert_eq!(keys.count(), values.count());
    }

    #[test]
    fn every_key_is_documented() {
        let text = render(&Config::default());
        let lines: Vec<_> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains(" = ") && !line.starts_with('#') {
                assert!(lines[i - 1].starts_with("# "), "undocumented key: {line}");
            }
        }
    }
}
