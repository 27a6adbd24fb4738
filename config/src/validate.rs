//! Validation: values that cannot work are refused at start-up, naming the
//! source and the key, rather than at the first pod.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::load::{Origins, origin_of};
use crate::{
    ApiConfig, Config, ConfigError, ImageConfig, NetworkConfig, RuntimeConfig, parse_duration,
};

/// Capabilities the kernel knows, without the `CAP_` prefix.
pub const KNOWN_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Ulimit names a container may set (`RLIMIT_` names, lower case).
const KNOWN_ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

struct Checker<'a> {
    origins: &'a Origins,
}

impl Checker<'_> {
    fn fail(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            source_name: origin_of(self.origins, key).to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn check(
        &self,
        ok: bool,
        key: &str,
        reason: impl FnOnce() -> String,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.fail(key, reason()))
        }
    }

    fn absolute(&self, key: &str, path: &Path, may_be_empty: bool) -> Result<(), ConfigError> {
        let ok = path.is_absolute() || (may_be_empty && path.as_os_str().is_empty());
        self.check(ok, key, || {
            format!("{:?} must be an absolute path", path.display().to_string())
        })
    }

    fn one_of(&self, key: &str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
        self.check(allowed.contains(&value), key, || {
            format!("{value:?} is not one of {}", allowed.join(", "))
        })
    }

    fn duration(&self, key: &str, value: &str, may_be_empty: bool) -> Result<(), ConfigError> {
        if value.is_empty() && may_be_empty {
            return Ok(());
        }
        parse_duration(value)
            .map(drop)
            .map_err(|e| self.fail(key, e.to_string()))
    }

    fn pairs(&self, key: &str, items: &[String], what: &str) -> Result<(), ConfigError> {
        for item in items {
            let ok = item
                .split_once('=')
                .is_some_and(|(k, _)| !k.trim().is_empty());
            self.check(ok, key, || format!("{item:?} is not of the form {what}"))?;
        }
        Ok(())
    }
}

/// Checks every value that can be judged without touching the host; the
/// first wrong one, table by table in the file's order, is the error.
pub fn validate(config: &Config, origins: &Origins) -> Result<(), ConfigError> {
    let c = Checker { origins };
    c.crio(config)?;
    c.api(&config.api)?;
    c.runtime(&config.runtime)?;
    c.image(&config.image)?;
    c.network(&config.network)?;
    c.check(
        config.metrics.metrics_port != 0,
        "crio.metrics.metrics_port",
        || "must be between 1 and 65535".into(),
    )?;
    c.pod_metrics(&config.stats.included_pod_metrics)?;
    c.check(
        config.tracing.tracing_sampling_rate_per_million <= 1_000_000,
        "crio.tracing.tracing_sampling_rate_per_million",
        || {
            format!(
                "{} is above 1000000",
                config.tracing.tracing_sampling_rate_per_million
            )
        },
    )
}

impl Checker<'_> {
    /// `[crio.stats] included_pod_metrics`: CRI-O's group names, or `all`
    /// alone.
    fn pod_metrics(&self, groups: &[String]) -> Result<(), ConfigError> {
        let key = "crio.stats.included_pod_metrics";
        if let [only] = groups
            && only == "all"
        {
            return Ok(());
        }
        for group in groups {
            self.check(group != "all", key, || {
                "\"all\" must be the only element".into()
            })?;
            self.one_of(key, group, crate::POD_METRICS_GROUPS)?;
        }
        Ok(())
    }

    /// `[crio]`.
    fn crio(&self, config: &Config) -> Result<(), ConfigError> {
        let c = self;
        c.absolute("crio.root", &config.root, false)?;
        c.absolute("crio.runroot", &config.runroot, false)?;
        c.absolute("crio.log_dir", &config.log_dir, false)?;
        c.absolute("crio.version_file", &config.version_file, true)?;
        c.absolute(
            "crio.clean_shutdown_file",
            &config.clean_shutdown_file,
            true,
        )?;
        c.check(
            matches!(config.storage_driver.as_str(), "" | "overlay" | "overlay2"),
            "crio.storage_driver",
            || {
                format!(
                    "driver {:?} is not supported (only overlay)",
                    config.storage_driver
                )
            },
        )
    }

    /// `[crio.api]`.
    fn api(&self, api: &ApiConfig) -> Result<(), ConfigError> {
        let c = self;
        c.absolute("crio.api.listen", &api.listen, false)?;
        c.check(
            api.stream_port.parse::<u16>().is_ok(),
            "crio.api.stream_port",
            || format!("{:?} is not a port number (0-65535)", api.stream_port),
        )?;
        c.check(
            api.stream_address.parse::<std::net::IpAddr>().is_ok() || api.stream_address.is_empty(),
            "crio.api.stream_address",
            || format!("{:?} is not an IP address", api.stream_address),
        )?;
        c.duration(
            "crio.api.stream_idle_timeout",
            &api.stream_idle_timeout,
            true,
        )?;
        if api.stream_enable_tls {
            for (name, path) in [
                ("stream_tls_cert", &api.stream_tls_cert),
                ("stream_tls_key", &api.stream_tls_key),
            ] {
                c.check(
                    !path.as_os_str().is_empty(),
                    "crio.api.stream_enable_tls",
                    || format!("TLS needs crio.api.{name} to be set"),
                )?;
            }
        }
        for (key, size) in [
            (
                "crio.api.grpc_max_send_msg_size",
                api.grpc_max_send_msg_size,
            ),
            (
                "crio.api.grpc_max_recv_msg_size",
                api.grpc_max_recv_msg_size,
            ),
        ] {
            c.check(size >= 4096 && size <= u64::from(u32::MAX), key, || {
                format!("{size} is outside 4096..=4294967295")
            })?;
        }
        Ok(())
    }

    /// `[crio.runtime]` and its runtime handlers.
    fn runtime(&self, rt: &RuntimeConfig) -> Result<(), ConfigError> {
        let c = self;
        c.one_of(
            "crio.runtime.log_level",
            &rt.log_level,
            &[
                "trace", "debug", "info", "warn", "warning", "error", "fatal", "panic",
            ],
        )?;
        c.one_of("crio.runtime.log_format", &rt.log_format, &["text", "json"])?;
        c.check(
            regex::Regex::new(&rt.log_filter).is_ok(),
            "crio.runtime.log_filter",
            || format!("{:?} is not a regular expression", rt.log_filter),
        )?;
        c.one_of(
            "crio.runtime.cgroup_manager",
            &rt.cgroup_manager,
            &["cgroupfs", "systemd"],
        )?;
        c.check(
            rt.runtimes.contains_key(&rt.default_runtime),
            "crio.runtime.default_runtime",
            || {
                let names: Vec<_> = rt.runtimes.keys().map(String::as_str).collect();
                format!(
                    "{:?} is not among the configured runtimes ({})",
                    rt.default_runtime,
                    names.join(", ")
                )
            },
        )?;
        for (name, handler) in &rt.runtimes {
            let key = |k: &str| format!("crio.runtime.runtimes.{name}.{k}");
            c.one_of(
                &key("runtime_type"),
                &handler.runtime_type,
                &["oci", "vm", ""],
            )?;
            for (platform, path) in &handler.platform_runtime_paths {
                let key = key(&format!("platform_runtime_paths.{platform}"));
                c.check(
                    platform.split_once('/').is_some_and(|(os, arch)| {
                        !os.is_empty() && !arch.is_empty() && !arch.contains('/')
                    }),
                    &key,
                    || format!("{platform:?} is not a platform of the form os/arch"),
                )?;
                c.absolute(&key, path, false)?;
            }
            for name in handler.default_annotations.keys() {
                c.check(!name.is_empty(), &key("default_annotations"), || {
                    "an annotation name must not be empty".into()
                })?;
            }
            c.absolute(&key("runtime_path"), &handler.runtime_path, true)?;
            c.absolute(&key("runtime_root"), &handler.runtime_root, true)?;
            c.absolute(&key("monitor_path"), &handler.monitor_path, true)?;
            c.pairs(&key("monitor_env"), &handler.monitor_env, "KEY=value")?;
        }
        for cap in &rt.default_capabilities {
            let bare = cap.trim_start_matches("CAP_").to_ascii_uppercase();
            c.check(
                KNOWN_CAPABILITIES.contains(&bare.as_str()),
                "crio.runtime.default_capabilities",
                || format!("{cap:?} is not a Linux capability"),
            )?;
        }
        c.pairs(
            "crio.runtime.default_sysctls",
            &rt.default_sysctls,
            "key=value",
        )?;
        c.pairs("crio.runtime.default_env", &rt.default_env, "KEY=value")?;
        for ulimit in &rt.default_ulimits {
            let ok = parse_ulimit(ulimit).is_some();
            c.check(ok, "crio.runtime.default_ulimits", || {
                format!("{ulimit:?} is not of the form name=soft:hard with a known name")
            })?;
        }
        c.absolute("crio.runtime.seccomp_profile", &rt.seccomp_profile, true)?;
        c.absolute("crio.runtime.namespaces_dir", &rt.namespaces_dir, false)?;
        c.check(rt.pids_limit >= -1, "crio.runtime.pids_limit", || {
            format!("{} is below -1", rt.pids_limit)
        })?;
        c.check(
            rt.ctr_stop_timeout >= 0,
            "crio.runtime.ctr_stop_timeout",
            || format!("{} is negative", rt.ctr_stop_timeout),
        )?;
        // As CRI-O: negative is no limit; a limit must hold a whole line piece
        // (its buffer is 8192 bytes), so 0 to 8191 are refused.
        c.check(
            rt.log_size_max < 0 || rt.log_size_max >= 8192,
            "crio.runtime.log_size_max",
            || {
                format!(
                    "{} must be negative (no limit) or at least 8192 bytes",
                    rt.log_size_max
                )
            },
        )
    }

    /// `[crio.image]`.
    fn image(&self, image: &ImageConfig) -> Result<(), ConfigError> {
        let c = self;
        c.one_of(
            "crio.image.default_transport",
            &image.default_transport,
            &["docker://", ""],
        )?;
        c.one_of(
            "crio.image.image_volumes",
            &image.image_volumes,
            &["mkdir", "bind", "ignore"],
        )?;
        c.duration(
            "crio.image.pull_progress_timeout",
            &image.pull_progress_timeout,
            true,
        )?;
        c.check(
            !image.pause_image.is_empty(),
            "crio.image.pause_image",
            || "must not be empty".into(),
        )?;
        c.absolute("crio.image.global_auth_file", &image.global_auth_file, true)?;
        c.absolute("crio.image.signature_policy", &image.signature_policy, true)
    }

    /// `[crio.network]`.
    fn network(&self, net: &NetworkConfig) -> Result<(), ConfigError> {
        self.absolute("crio.network.network_dir", &net.network_dir, false)?;
        for dir in &net.plugin_dirs {
            self.absolute("crio.network.plugin_dirs", dir, false)?;
        }
        self.duration("crio.network.plugin_timeout", &net.plugin_timeout, false)?;
        self.check(
            parse_duration(&net.plugin_timeout).is_ok_and(|d| !d.is_zero()),
            "crio.network.plugin_timeout",
            || "must be longer than zero (every plugin run has a deadline)".into(),
        )
    }
}

/// Parses `name=soft:hard` (or `name=value` for both), as CRI-O's default_ulimits.
pub fn parse_ulimit(text: &str) -> Option<(String, i64, i64)> {
    let (name, limits) = text.split_once('=')?;
    let name = name.trim().to_ascii_lowercase();
    if !KNOWN_ULIMITS.contains(&name.as_str()) {
        return None;
    }
    let parse = |s: &str| -> Option<i64> {
        match s.trim() {
            "-1" | "unlimited" => Some(-1),
            n => n.parse::<i64>().ok().filter(|v| *v >= 0),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (parse(s)?, parse(h)?),
        None => (parse(limits)?, parse(limits)?),
    };
    if hard != -1 && (soft == -1 || soft > hard) {
        return None;
    }
    Some((name, soft, hard))
}

/// The host's platform as `platform_runtime_paths` names it (Go's names,
/// as CRI-O: `linux/amd64`, `linux/arm64`).
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// Finds each runtime handler's binary (the `platform_runtime_paths` entry
/// of `platform`, else its `runtime_path`, else its name on `path_env`) and
/// fills `runtime_path`. The default handler's binary must exist; the other
/// handlers whose binary is missing stay configured and are returned with
/// the reason, so pods asking for them are refused saying why.
pub fn resolve_runtimes(
    config: &mut Config,
    origins: &Origins,
    path_env: &str,
    platform: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let c = Checker { origins };
    let mut missing = BTreeMap::new();
    for (name, handler) in config.runtime.runtimes.iter_mut() {
        if let Some(path) = handler.platform_runtime_paths.get(platform) {
            handler.runtime_path = path.clone();
        }
        let found = if handler.runtime_path.as_os_str().is_empty() {
            find_on_path(name, path_env)
        } else {
            is_executable(&handler.runtime_path).then(|| handler.runtime_path.clone())
        };
        let what = || {
            if handler.runtime_path.as_os_str().is_empty() {
                format!("{name:?} not found on PATH")
            } else {
                format!("{:?} is not an executable file", handler.runtime_path)
            }
        };
        match found {
            Some(path) => handler.runtime_path = path,
            None if *name == config.runtime.default_runtime => {
                let key = format!("crio.runtime.runtimes.{name}.runtime_path");
                return Err(c.fail(&key, format!("default runtime binary missing: {}", what())));
            }
            None => {
                missing.insert(name.clone(), format!("runtime binary missing: {}", what()));
            }
        }
    }
    Ok(missing)
}

/// `name` on a colon-separated search path.
pub fn find_on_path(name: &str, path_env: &str) -> Option<PathBuf> {
    path_env
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_from_tables;

    fn err_for(text: &str) -> ConfigError {
        load_from_tables(vec![("bad.conf".into(), text.parse().unwrap())]).unwrap_err()
    }

    #[test]
    fn each_invalid_value_names_file_key_and_reason() {
        let cases = [
            ("[crio]\nroot = \"relative\"", "crio.root", "absolute"),
            (
                "[crio]\nstorage_driver = \"btrfs\"",
                "crio.storage_driver",
                "not supported",
            ),
            (
                "[crio.api]\nlisten = \"crio.sock\"",
                "crio.api.listen",
                "absolute",
            ),
            (
                "[crio.api]\nstream_port = \"http\"",
                "crio.api.stream_port",
                "port",
            ),
            (
                "[crio.api]\nstream_address = \"nowhere\"",
                "crio.api.stream_address",
                "IP",
            ),
            (
                "[crio.api]\nstream_idle_timeout = \"5 minutes\"",
                "crio.api.stream_idle_timeout",
                "duration",
            ),
            (
                "[crio.api]\nstream_enable_tls = true",
                "crio.api.stream_enable_tls",
                "stream_tls_cert",
            ),
            (
                "[crio.api]\ngrpc_max_send_msg_size = 10",
                "crio.api.grpc_max_send_msg_size",
                "outside",
            ),
            (
                "[crio.runtime]\nlog_format = \"xml\"",
                "crio.runtime.log_format",
                "not one of",
            ),
            (
                "[crio.runtime]\nlog_filter = \"(unclosed\"",
                "crio.runtime.log_filter",
                "regular expression",
            ),
            (
                "[crio.runtime]\nlog_level = \"loud\"",
                "crio.runtime.log_level",
                "not one of",
            ),
            (
                "[crio.runtime]\ncgroup_manager = \"cgmanager\"",
                "crio.runtime.cgroup_manager",
                "cgroupfs, systemd",
            ),
            (
                "[crio.runtime]\ndefault_runtime = \"kata\"",
                "crio.runtime.default_runtime",
                "not among",
            ),
            (
                "[crio.runtime.runtimes.x]\nruntime_type = \"kvm\"",
                "crio.runtime.runtimes.x.runtime_type",
                "oci, vm",
            ),
            (
                "[crio.runtime.runtimes.x.platform_runtime_paths]\n\"amd64\" = \"/bin/x\"",
                "crio.runtime.runtimes.x.platform_runtime_paths.amd64",
                "os/arch",
            ),
            (
                "[crio.runtime.runtimes.x.platform_runtime_paths]\n\"linux/amd64\" = \"x\"",
                "crio.runtime.runtimes.x.platform_runtime_paths.linux/amd64",
                "absolute",
            ),
            (
                "[crio.runtime.runtimes.x]\nruntime_path = \"bin/x\"",
                "crio.runtime.runtimes.x.runtime_path",
                "absolute",
            ),
            (
                "[crio.runtime]\ndefault_capabilities = [\"CHOWN\", \"FLY\"]",
                "crio.runtime.default_capabilities",
                "\"FLY\"",
            ),
            (
                "[crio.runtime]\ndefault_sysctls = [\"net.ipv4.ip_forward\"]",
                "crio.runtime.default_sysctls",
                "key=value",
            ),
            (
                "[crio.runtime]\ndefault_env = [\"=x\"]",
                "crio.runtime.default_env",
                "KEY=value",
            ),
            (
                "[crio.runtime]\ndefault_ulimits = [\"nofile=2048:1024\"]",
                "crio.runtime.default_ulimits",
                "soft:hard",
            ),
            (
                "[crio.runtime]\npids_limit = -7",
                "crio.runtime.pids_limit",
                "below",
            ),
            (
                "[crio.runtime]\nctr_stop_timeout = -1",
                "crio.runtime.ctr_stop_timeout",
                "negative",
            ),
            (
                "[crio.runtime]\nlog_size_max = 100",
                "crio.runtime.log_size_max",
                "8192",
            ),
            (
                "[crio.runtime]\nlog_size_max = 0",
                "crio.runtime.log_size_max",
                "negative (no limit)",
            ),
            (
                "[crio.image]\nimage_volumes = \"copy\"",
                "crio.image.image_volumes",
                "not one of",
            ),
            (
                "[crio.image]\npull_progress_timeout = \"soon\"",
                "crio.image.pull_progress_timeout",
                "duration",
            ),
            (
                "[crio.image]\npause_image = \"\"",
                "crio.image.pause_image",
                "empty",
            ),
            (
                "[crio.network]\nplugin_timeout = \"0s\"",
                "crio.network.plugin_timeout",
                "longer than zero",
            ),
            (
                "[crio.network]\nnetwork_dir = \"net.d\"",
                "crio.network.network_dir",
                "absolute",
            ),
            (
                "[crio.metrics]\nmetrics_port = 0",
                "crio.metrics.metrics_port",
                "65535",
            ),
            (
                "[crio.stats]\nincluded_pod_metrics = [\"cpu\", \"gpu\"]",
                "crio.stats.included_pod_metrics",
                "not one of",
            ),
            (
                "[crio.stats]\nincluded_pod_metrics = [\"all\", \"cpu\"]",
                "crio.stats.included_pod_metrics",
                "only element",
            ),
            (
                "[crio.tracing]\ntracing_sampling_rate_per_million = 2000000",
                "crio.tracing.tracing_sampling_rate_per_million",
                "above",
            ),
        ];
        for (text, key, reason) in cases {
            let err = err_for(text);
            assert_eq!(err.source_name, "bad.conf", "{text}: {err}");
            assert_eq!(err.key, key, "{text}: {err}");
            assert!(err.reason.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn ulimits_parse() {
        assert_eq!(
            parse_ulimit("nofile=1024:2048"),
            Some(("nofile".into(), 1024, 2048))
        );
        assert_eq!(parse_ulimit("core=-1"), Some(("core".into(), -1, -1)));
        assert_eq!(
            parse_ulimit("nofile=unlimited:-1"),
            Some(("nofile".into(), -1, -1))
        );
        assert_eq!(parse_ulimit("bogus=1:2"), None);
        assert_eq!(parse_ulimit("nofile=x"), None);
        assert_eq!(parse_ulimit("nofile=-1:10"), None);
    }

    #[test]
    fn runtime_binaries_are_resolved() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runc = dir.path().join("runc");
        std::fs::write(&runc, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_env = format!("/nonexistent:{}", dir.path().display());

        let mut config = Config::default();
        let missing = resolve_runtimes(&mut config, &Origins::new(), &path_env, "linux/x").unwrap();
        assert_eq!(config.runtime.runtimes["runc"].runtime_path, runc);
        assert!(config.runtime.runtimes.contains_key("crun"), "kept");
        assert_eq!(missing.len(), 1);
        assert!(missing["crun"].contains("not found on PATH"), "{missing:?}");

        // The platform's own path wins over runtime_path.
        let mut config = Config::default();
        let crun = config.runtime.runtimes.get_mut("crun").unwrap();
        crun.platform_runtime_paths
            .insert("linux/x".into(), runc.clone());
        crun.runtime_path = dir.path().join("nope");
        let missing = resolve_runtimes(&mut config, &Origins::new(), &path_env, "linux/x").unwrap();
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(config.runtime.runtimes["crun"].runtime_path, runc);

        let mut config = Config::default();
        config.runtime.default_runtime = "crun".into();
        let err = resolve_runtimes(&mut config, &Origins::new(), &path_env, "linux/x").unwrap_err();
        assert_eq!(err.key, "crio.runtime.runtimes.crun.runtime_path");
        assert!(err.reason.contains("not found on PATH"), "{err}");

        let mut config = Config::default();
        config
            .runtime
            .runtimes
            .get_mut("runc")
            .unwrap()
            .runtime_path = dir.path().join("nope");
        let mut origins = Origins::new();
        origins.insert(
            "crio.runtime.runtimes.runc.runtime_path".into(),
            "x.conf".into(),
        );
        let err = resolve_runtimes(&mut config, &origins, &path_env, "linux/x").unwrap_err();
        assert_eq!(err.source_name, "x.conf");
        assert!(err.reason.contains("not an executable file"), "{err}");
    }
}
