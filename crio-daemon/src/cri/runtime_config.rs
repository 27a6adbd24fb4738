//! RuntimeConfig (the cgroup driver kubelet must match) and
//! UpdateRuntimeConfig (the node's pod CIDR).

use crio_api::cri::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigResponse, UpdateRuntimeConfigRequest,
    UpdateRuntimeConfigResponse,
};
use crio_config::Config;

use super::{Answer, State};

/// UpdateRuntimeConfig: hands the pod CIDR to the CNI plugins.
pub fn update_runtime_config(
    st: &State,
    req: UpdateRuntimeConfigRequest,
) -> Answer<UpdateRuntimeConfigResponse> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    st.pods.set_pod_cidr(&cidr)?;
    Ok(UpdateRuntimeConfigResponse {})
}

/// Reports the configured cgroup manager as the CRI cgroup driver.
pub fn runtime_config(config: &Config) -> RuntimeConfigResponse {
    let driver = match config.runtime.cgroup_manager.as_str() {
        "systemd" => CgroupDriver::Systemd,
        _ => CgroupDriver::Cgroupfs,
    };
    RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_follows_cgroup_manager() {
        let mut config = Config::default();
        let driver = |c: &Config| runtime_config(c).linux.unwrap().cgroup_driver;
        assert_eq!(driver(&config), CgroupDriver::Cgroupfs as i32);
        config.runtime.cgroup_manager = "systemd".into();
        assert_eq!(driver(&config), CgroupDriver::Systemd as i32);
    }
}
