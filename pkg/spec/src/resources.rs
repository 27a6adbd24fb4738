//! Cgroup resources and devices.

use crio_api::cri::{ContainerConfig, LinuxContainerResources};

use crate::oci::{
    LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxResources,
};
use crate::{Host, SpecError, invalid};

/// The OCI resources (memory, CPU, hugepages, unified) of CRI container
/// resources; what CreateContainer and UpdateContainerResources apply.
pub fn resources_of(resources: &LinuxContainerResources) -> LinuxResources {
    let positive = |v: i64| (v > 0).then_some(v);
    let mut res = LinuxResources::default();
    // An empty device list is written, as runc's update expects a list.
    res.set_devices(Some(Vec::new()));
    if resources.memory_limit_in_bytes > 0 || resources.memory_swap_limit_in_bytes > 0 {
        let mut memory = LinuxMemory::default();
        memory
            .set_limit(positive(resources.memory_limit_in_bytes))
            .set_swap(positive(resources.memory_swap_limit_in_bytes));
        res.set_memory(Some(memory));
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(positive(resources.cpu_shares).map(|v| v as u64))
        .set_quota(positive(resources.cpu_quota))
        .set_period(positive(resources.cpu_period).map(|v| v as u64))
        .set_cpus((!resources.cpuset_cpus.is_empty()).then(|| resources.cpuset_cpus.clone()))
        .set_mems((!resources.cpuset_mems.is_empty()).then(|| resources.cpuset_mems.clone()));
    if cpu != LinuxCpu::default() {
        res.set_cpu(Some(cpu));
    }
    let hugepages: Vec<LinuxHugepageLimit> = resources
        .hugepage_limits
        .iter()
        .map(|h| {
            let mut limit = LinuxHugepageLimit::default();
            limit
                .set_page_size(h.page_size.clone())
                .set_limit(i64::try_from(h.limit).unwrap_or(i64::MAX));
            limit
        })
        .collect();
    res.set_hugepage_limits((!hugepages.is_empty()).then_some(hugepages));
    let unified = &resources.unified;
    res.set_unified((!unified.is_empty()).then(|| unified.clone()));
    res
}

/// A device cgroup rule.
fn device_rule(
    allow: bool,
    kind: Option<LinuxDeviceType>,
    numbers: Option<(i64, i64)>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow)
        .set_typ(kind)
        .set_major(numbers.map(|n| n.0))
        .set_minor(numbers.map(|n| n.1))
        .set_access(Some(access.into()));
    rule
}

/// A device node owned by root, mode 0660.
fn device(path: &str, kind: LinuxDeviceType, major: i64, minor: i64) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(path.into())
        .set_typ(kind)
        .set_major(major)
        .set_minor(minor)
        .set_file_mode(Some(0o660))
        .set_uid(Some(0))
        .set_gid(Some(0));
    d
}

/// The devices of a container and the cgroup rules that go with them: the
/// requested host devices, every host device when privileged; the rules
/// start with all devices denied (allowed when privileged).
pub(crate) fn devices(
    config: &ContainerConfig,
    host: &Host,
    privileged: bool,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut devices = Vec::new();
    let mut rules = vec![device_rule(privileged, None, None, "rwm")];
    for d in &config.devices {
        let Some((_, kind, major, minor)) = host.devices.iter().find(|(p, ..)| *p == d.host_path)
        else {
            return Err(SpecError::Missing {
                field: "config.devices".into(),
                reason: format!("host device {:?} not found", d.host_path),
            });
        };
        if d.permissions.is_empty() || !d.permissions.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid(
                "config.devices",
                format!(
                    "permissions {:?} are not a combination of r, w and m",
                    d.permissions
                ),
            ));
        }
        let path = if d.container_path.is_empty() {
            &d.host_path
        } else {
            &d.container_path
        };
        devices.push(device(path, *kind, *major, *minor));
        rules.push(device_rule(
            true,
            Some(*kind),
            Some((*major, *minor)),
            &d.permissions,
        ));
    }
    if privileged {
        for (path, kind, major, minor) in &host.devices {
            if !devices
                .iter()
                .any(|d| d.path().as_os_str() == path.as_str())
            {
                devices.push(device(path, *kind, *major, *minor));
            }
        }
    }
    Ok((devices, rules))
}
