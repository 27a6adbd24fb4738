//! Status: RuntimeReady and NetworkReady conditions, runtime handlers, and
//! (verbose) the effective configuration.

use std::collections::HashMap;

use crio_api::cri::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
};
use crio_config::Config;

/// Reason given while no usable CNI configuration exists.
pub const NETWORK_NOT_READY: &str = "NetworkPluginNotReady";

/// Builds the Status answer. The CNI directory is read on every call, so a
/// configuration that appears or changes is seen without a restart.
pub fn status(
    config: &Config,
    handlers: &HashMap<String, RuntimeHandlerFeatures>,
    req: &StatusRequest,
) -> StatusResponse {
    let net = &config.network;
    let network =
        crio_network::load_network(&net.network_dir, &net.cni_default_network, &net.plugin_dirs);
    let network_condition = match &network {
        Ok(_) => condition("NetworkReady", true, "", ""),
        Err(e) => condition(
            "NetworkReady",
            false,
            NETWORK_NOT_READY,
            &format!("Network plugin returns error: {e}"),
        ),
    };
    let mut info = HashMap::new();
    if req.verbose {
        info.insert(
            "config".to_string(),
            serde_json::to_string(config).unwrap_or_default(),
        );
        if let Ok(conf) = &network {
            info.insert("cniconfig".to_string(), conf.list.to_string());
        }
        let lsm = crate::container::host_lsm(config);
        info.insert(
            "security".to_string(),
            lsm.report(config.runtime.selinux).to_string(),
        );
    }
    StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![condition("RuntimeReady", true, "", ""), network_condition],
        }),
        info,
        runtime_handlers: config
            .runtime
            .runtimes
            .keys()
            .map(|name| RuntimeHandler {
                name: name.clone(),
                features: Some(handlers.get(name).cloned().unwrap_or_default()),
            })
            .collect(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    }
}

/// What a runtime handler can do, from `RUNTIME features` (asked once, at
/// start, under a deadline): recursive read-only mounts when the runtime knows `rro` and the
/// kernel has mount_setattr (5.12); user namespaces when the runtime can
/// join one and `userns_host` (the daemon's idmapped mounts work here, see
/// `crate::userns::probe_host`).
pub fn handler_features(
    runtime_path: &std::path::Path,
    userns_host: bool,
) -> RuntimeHandlerFeatures {
    let features = crate::command::output_within(
        std::process::Command::new(runtime_path).arg("features"),
        crate::command::RUNTIME_DEADLINE,
    )
    .map(|out| String::from_utf8_lossy(&out).into_owned())
    .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    RuntimeHandlerFeatures {
        recursive_read_only_mounts: rro_supported(&features, &kernel),
        user_namespaces: userns_host && crate::userns::runtime_supports(&features),
    }
}

/// Whether `features` (the runtime's JSON) lists the `rro` mount option and
/// `kernel` (a release like `6.1.0-18-amd64`) is 5.12 or later.
fn rro_supported(features: &str, kernel: &str) -> bool {
    let listed = serde_json::from_str::<serde_json::Value>(features).is_ok_and(|f| {
        f["mountOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "rro"))
    });
    let mut parts = kernel.trim().split(|c: char| !c.is_ascii_digit());
    let version = (
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0),
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0),
    );
    listed && version >= (5, 12)
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> RuntimeCondition {
    RuntimeCondition {
        r#type: kind.into(),
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rro_needs_the_runtime_and_the_kernel() {
        let with = r#"{"mountOptions": ["ro", "rro"]}"#;
        assert!(super::rro_supported(with, "6.18.44-fc\n"));
        assert!(super::rro_supported(with, "5.12.0"));
        assert!(!super::rro_supported(with, "5.11.9"));
        assert!(!super::rro_supported(
            r#"{"mountOptions": ["ro"]}"#,
            "6.1.0"
        ));
        assert!(!super::rro_supported("", "6.1.0"));
    }

    use super::*;

    #[test]
    fn network_ready_follows_cni_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.network.network_dir = tmp.path().join("net.d");
        config.network.plugin_dirs = vec![tmp.path().to_path_buf()];
        let network = |c: &Config| {
            status(c, &HashMap::new(), &StatusRequest { verbose: true })
                .status
                .unwrap()
                .conditions[1]
                .clone()
        };
        let cond = network(&config);
        assert!(!cond.status);
        assert_eq!(cond.reason, NETWORK_NOT_READY);
        assert!(
            cond.message.contains("no CNI configuration"),
            "{}",
            cond.message
        );

        std::fs::create_dir_all(&config.network.network_dir).unwrap();
        std::fs::write(tmp.path().join("loopback"), "").unwrap();
        std::fs::write(
            config.network.network_dir.join("10-lo.conf"),
            r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#,
        )
        .unwrap();
        assert!(network(&config).status);
        let full = status(&config, &HashMap::new(), &StatusRequest { verbose: true });
        assert!(full.info["cniconfig"].contains("loopback"));
        assert!(full.info["config"].contains("\"cgroup_manager\":\"cgroupfs\""));
        assert_eq!(full.runtime_handlers.len(), 2);
    }
}
