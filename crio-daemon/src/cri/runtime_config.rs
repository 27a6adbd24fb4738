//! RuntimeConfig: the cgroup driver kubelet must match.

use crio_api::cri::{CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigResponse};
use crio_config::Config;

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
