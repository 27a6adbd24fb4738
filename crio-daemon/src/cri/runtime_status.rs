//! Status: RuntimeReady and NetworkReady conditions, runtime handlers (the
//! default also under the empty name), and (verbose) the effective
//! configuration and every handler with why it cannot run pods, if so.

use std::collections::HashMap;

use crio_api::cri::{
    RuntimeCondition, RuntimeFeatures, RuntimeStatus, StatusRequest, StatusResponse,
};
use crio_config::Config;

use crate::handlers::Handlers;

/// Reason given while no usable CNI configuration exists.
pub const NETWORK_NOT_READY: &str = "NetworkPluginNotReady";

/// Builds the Status answer. The CNI directory is read on every call, so a
/// configuration that appears or changes is seen without a restart.
pub fn status(
    config: &Config,
    handlers: &Handlers,
    apparmor: &crate::apparmor::DefaultProfile,
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
        info.insert("runtimeHandlers".to_string(), handlers.report().to_string());
        let mut lsm = crate::container::host_lsm(config).report(config.runtime.selinux);
        apparmor.annotate(&mut lsm);
        info.insert("security".to_string(), lsm.to_string());
    }
    StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![condition("RuntimeReady", true, "", ""), network_condition],
        }),
        info,
        runtime_handlers: handlers.status_entries(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    }
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
    use super::*;

    #[test]
    fn network_ready_follows_cni_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.network.network_dir = tmp.path().join("net.d");
        config.network.plugin_dirs = vec![tmp.path().to_path_buf()];
        let missing = [("crun".to_string(), "runtime binary missing".to_string())].into();
        let locator = crate::handlers::Locator {
            own_exe: None,
            path_env: "",
        };
        let handlers = Handlers::configured(&config, &missing, &locator);
        let network = |c: &Config| {
            status(
                c,
                &handlers,
                &Default::default(),
                &StatusRequest { verbose: true },
            )
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
        let full = status(
            &config,
            &handlers,
            &Default::default(),
            &StatusRequest { verbose: true },
        );
        assert!(full.info["cniconfig"].contains("loopback"));
        assert!(full.info["config"].contains("\"cgroup_manager\":\"cgroupfs\""));
        let names: Vec<_> = full
            .runtime_handlers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["", "runc"], "the default twice, crun not usable");
        assert!(
            full.info["runtimeHandlers"].contains("runtime binary missing"),
            "{}",
            full.info["runtimeHandlers"]
        );
    }
}
