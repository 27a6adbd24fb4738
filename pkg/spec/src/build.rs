//! The spec as a whole: the process, the mounts and the Linux part
//! (namespaces, cgroup, resources, devices, seccomp, masked paths).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crio_api::cri::{LinuxContainerSecurityContext, NamespaceMode, security_profile::ProfileType};

use crate::oci::{
    Linux, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxSeccomp, OCI_VERSION, Root, Spec,
};
use crate::{
    Defaults, Input, MASKED_PATHS, READONLY_PATHS, SpecError, capabilities, invalid, lsm, mounts,
    process, resources, seccomp,
};

/// Builds the spec.
pub fn build(input: &Input) -> Result<Spec, SpecError> {
    let config = input.config;
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let pod_sc = input
        .pod
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    if sc.privileged && !pod_sc.is_some_and(|s| s.privileged) {
        return Err(invalid(
            "config.linux.security_context.privileged",
            "the pod sandbox is not privileged (its linux.security_context.privileged is false)",
        ));
    }
    let hostname = std::fs::read_to_string(input.pod.files_dir.join("hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let caps = capabilities(config, &input.defaults.capabilities, &input.host.bounding)?;
    let process = process::process(input, &sc, &caps, &hostname)?;
    let seccomp = seccomp_for(&sc, input.defaults, &caps)?;
    let mounts = mounts::mounts(input, sc.privileged)?;
    let linux = linux(input, &sc, seccomp)?;
    let host_network = pod_sc
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == NamespaceMode::Node as i32);
    let mut root = Root::default();
    root.set_path(input.rootfs.into())
        .set_readonly(Some(sc.readonly_rootfs));
    let mut annotations = config.annotations.clone();
    annotations.insert(
        "io.kubernetes.cri.container-type".into(),
        "container".into(),
    );
    // Spec::default() is youki's spec (a hostname, mounts, a process): every
    // field it fills is set here.
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.into())
        .set_process(Some(process))
        .set_root(Some(root))
        .set_hostname((!host_network).then_some(hostname))
        .set_domainname(None)
        .set_mounts(Some(mounts))
        .set_hooks(None)
        .set_annotations(Some(annotations))
        .set_linux(Some(linux))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_zos(None);
    Ok(spec)
}

/// The Linux part of the spec.
fn linux(
    input: &Input,
    sc: &LinuxContainerSecurityContext,
    seccomp: Option<LinuxSeccomp>,
) -> Result<Linux, SpecError> {
    let privileged = sc.privileged;
    let namespaces = namespaces(input, sc)?;
    let requested = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let mut res = resources::resources_of(&requested);
    let (devices, rules) = resources::devices(input.config, input.host, privileged)?;
    res.set_devices(Some(rules));
    if input.defaults.pids_limit > 0 {
        let mut pids = LinuxPids::default();
        pids.set_limit(input.defaults.pids_limit);
        res.set_pids(Some(pids));
    }
    let sysctl: HashMap<String, String> = input
        .pod
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default();
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            or_default(&sc.masked_paths, MASKED_PATHS),
            or_default(&sc.readonly_paths, READONLY_PATHS),
        )
    };
    let selinux = lsm::selinux_labels(sc.selinux_options.as_ref(), input.host.lsm.selinux);
    let nonempty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    // Linux::default() comes with namespaces, masked paths and a device
    // rule: every field it fills is set here.
    let mut linux = Linux::default();
    linux
        .set_namespaces(Some(namespaces))
        .set_devices((!devices.is_empty()).then_some(devices))
        .set_cgroups_path(Some(cgroups_path(input).into()))
        .set_resources(Some(res))
        .set_sysctl((!sysctl.is_empty()).then_some(sysctl))
        .set_seccomp(seccomp)
        .set_rootfs_propagation(mounts::rootfs_propagation(&input.config.mounts))
        .set_masked_paths(nonempty(masked))
        .set_readonly_paths(nonempty(readonly))
        .set_mount_label(selinux.map(|(_, mount)| mount))
        .set_net_devices(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);
    Ok(linux)
}

/// The request's paths, or `defaults` when it gives none.
fn or_default(requested: &[String], defaults: &[&str]) -> Vec<String> {
    if requested.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        requested.to_vec()
    }
}

/// A namespace of `kind`, joined at `path` or new.
fn namespace(kind: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(kind).set_path(path.map(PathBuf::from));
    ns
}

/// A new mount namespace, the pod's network, IPC and UTS namespaces, and
/// the PID namespace the container's PID mode asks for.
fn namespaces(
    input: &Input,
    sc: &LinuxContainerSecurityContext,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    for (kind, path) in [
        (LinuxNamespaceType::Network, &input.pod.netns),
        (LinuxNamespaceType::Ipc, &input.pod.ipcns),
        (LinuxNamespaceType::Uts, &input.pod.utsns),
    ] {
        namespaces.extend(path.as_deref().map(|p| namespace(kind, Some(p))));
    }
    let pid_mode = sc
        .namespace_options
        .as_ref()
        .map(|n| n.pid)
        .unwrap_or(NamespaceMode::Container as i32);
    match NamespaceMode::try_from(pid_mode).unwrap_or(NamespaceMode::Container) {
        NamespaceMode::Node => {}
        NamespaceMode::Pod | NamespaceMode::Target => match &input.pod.pidns {
            Some(p) => namespaces.push(namespace(LinuxNamespaceType::Pid, Some(p))),
            None => {
                return Err(invalid(
                    "config.linux.security_context.namespace_options.pid",
                    "the pod has no shared PID namespace (its PID mode is not POD)",
                ));
            }
        },
        NamespaceMode::Container => namespaces.push(namespace(LinuxNamespaceType::Pid, None)),
    }
    Ok(namespaces)
}

/// The container's cgroup: a systemd slice and scope, or a cgroupfs path,
/// below the pod's parent.
fn cgroups_path(input: &Input) -> String {
    let parent = input.pod.cgroup_parent.as_str();
    if input.defaults.systemd_cgroups {
        let parent = if parent.is_empty() {
            "system.slice"
        } else {
            parent
        };
        format!("{parent}:crio:{}", input.id)
    } else {
        let parent = if parent.is_empty() { "/crio" } else { parent };
        format!("{}/crio-{}", parent.trim_end_matches('/'), input.id)
    }
}

/// The OCI seccomp filter the request asks for, resolved for the
/// container's capabilities `caps`: none unless a profile is named, and
/// none for a privileged container whatever it names (as CRI-O and
/// containerd do).
fn seccomp_for(
    sc: &LinuxContainerSecurityContext,
    defaults: &Defaults,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let field = "config.linux.security_context.seccomp.localhost_ref";
    let platform = seccomp::Platform::host();
    match &sc.seccomp {
        _ if sc.privileged => Ok(None),
        None => Ok(None),
        Some(p) if p.profile_type == ProfileType::Unconfined as i32 => Ok(None),
        Some(p) if p.profile_type == ProfileType::RuntimeDefault as i32 => {
            let profile = defaults
                .seccomp_default
                .as_ref()
                .unwrap_or_else(|| seccomp::Profile::runtime_default());
            Ok(Some(profile.resolve(caps, platform)))
        }
        Some(p) => {
            let path = p.localhost_ref.trim_start_matches("localhost/");
            if !path.starts_with('/') {
                return Err(invalid(field, format!("{path:?} is not an absolute path")));
            }
            match seccomp::Profile::load(Path::new(path)) {
                Ok(profile) => Ok(Some(profile.resolve(caps, platform))),
                Err(e @ seccomp::ProfileError::Read { .. }) => Err(SpecError::Missing {
                    field: field.into(),
                    reason: e.to_string(),
                }),
                Err(e) => Err(invalid(field, e.to_string())),
            }
        }
    }
}
