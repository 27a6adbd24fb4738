//! The OCI runtime spec of a container, made from its CRI config, its
//! image's config and its pod, the Kubernetes way. Pure functions: what the
//! host is (capability bounding set, oom_score_adj, the image's users) comes
//! in through [`Host`], so all of it is unit-tested without root.
#![deny(unsafe_code)]

pub mod devices;
pub mod lsm;
pub mod oci;
pub mod propagation;
pub mod seccomp;
pub mod user;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crio_api::cri::{
    ContainerConfig, LinuxContainerResources, MountPropagation, NamespaceMode, PodSandboxConfig,
    security_profile::ProfileType,
};
use serde_json::Value;

use oci::{
    Capabilities, Cpu, Device, DeviceRule, Hugepage, Linux, Memory, Mount, Namespace, Pids,
    Process, Resources, Rlimit, Root, Spec,
};

/// Why a spec cannot be made; each names the CRI field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A request field is wrong (InvalidArgument at the CRI).
    #[error("{field}: {reason}")]
    Invalid {
        /// The CRI field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Something named by the request does not exist (NotFound).
    #[error("{field}: {reason}")]
    Missing {
        /// The CRI field.
        field: String,
        /// What is missing.
        reason: String,
    },
}

fn invalid(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The daemon's configuration that shapes every container.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// `default_capabilities`.
    pub capabilities: Vec<String>,
    /// `default_env`.
    pub env: Vec<String>,
    /// `default_ulimits`, parsed: (name, soft, hard).
    pub ulimits: Vec<(String, i64, i64)>,
    /// `pids_limit` (≤ 0: none).
    pub pids_limit: i64,
    /// The RuntimeDefault seccomp profile from `seccomp_profile` (None: the
    /// built-in one).
    pub seccomp_default: Option<seccomp::Profile>,
    /// `cgroup_manager` is systemd.
    pub systemd_cgroups: bool,
    /// `image_volumes`: mkdir, bind or ignore.
    pub image_volumes: String,
    /// `apparmor_profile`: the RuntimeDefault AppArmor profile.
    pub apparmor_profile: String,
}

/// Facts about the host and the image.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Capabilities the daemon itself may grant (its bounding set).
    pub bounding: Vec<String>,
    /// The daemon's own oom_score_adj: nothing below it is allowed.
    pub min_oom_score_adj: i64,
    /// The image's /etc/passwd.
    pub passwd: String,
    /// The image's /etc/group.
    pub group: String,
    /// The security modules the host has (SELinux only when the `selinux`
    /// option asks for it too).
    pub lsm: lsm::Lsm,
    /// Host devices for privileged containers: (path, kind, major, minor).
    pub devices: Vec<(String, String, i64, i64)>,
}

/// The pod a container joins.
#[derive(Debug, Clone)]
pub struct Pod<'a> {
    /// Its configuration.
    pub config: &'a PodSandboxConfig,
    /// Its hostname, resolv.conf and hosts files.
    pub files_dir: PathBuf,
    /// Its /dev/shm (None: the host's).
    pub shm: Option<PathBuf>,
    /// Pinned namespaces: net, ipc, uts (None: the host's).
    pub netns: Option<PathBuf>,
    /// IPC namespace.
    pub ipcns: Option<PathBuf>,
    /// UTS namespace.
    pub utsns: Option<PathBuf>,
    /// The PID namespace a POD or TARGET container joins: the pod's (its
    /// infra process), or the target container's.
    pub pidns: Option<PathBuf>,
    /// Cgroup parent.
    pub cgroup_parent: String,
}

/// Everything a spec is made from.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Container ID.
    pub id: &'a str,
    /// The CRI request.
    pub config: &'a ContainerConfig,
    /// The image config document.
    pub image: &'a Value,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The pod.
    pub pod: Pod<'a>,
    /// Daemon defaults.
    pub defaults: &'a Defaults,
    /// Host facts.
    pub host: &'a Host,
}

/// Paths masked from non-privileged containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths read-only in non-privileged containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// argv the Kubernetes way: `command` replaces the entrypoint and drops the
/// image's cmd; `args` replaces cmd.
pub fn argv(config: &ContainerConfig, image: &Value) -> Result<Vec<String>, SpecError> {
    let entrypoint = strings(&image["config"]["Entrypoint"]);
    let cmd = strings(&image["config"]["Cmd"]);
    let args = match (config.command.is_empty(), config.args.is_empty()) {
        (false, _) => [config.command.clone(), config.args.clone()].concat(),
        (true, false) => [entrypoint, config.args.clone()].concat(),
        (true, true) => [entrypoint, cmd].concat(),
    };
    if args.is_empty() {
        return Err(invalid(
            "config.command",
            "no command given and the image has no entrypoint or cmd",
        ));
    }
    Ok(args)
}

/// Environment: the image's, then the daemon's defaults, then the request's;
/// later values of a key replace earlier ones in place.
pub fn environment(
    config: &ContainerConfig,
    image: &Value,
    defaults: &[String],
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set("HOSTNAME", hostname);
    for e in strings(&image["config"]["Env"]).iter().chain(defaults) {
        if let Some((k, v)) = e.split_once('=') {
            set(k, v);
        }
    }
    for kv in &config.envs {
        set(&kv.key, &kv.value);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn normalise_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).to_string()
}

/// The capability set: defaults plus adds minus drops (`ALL` in either),
/// every capability the daemon holds when privileged; never beyond the
/// daemon's own bounding set.
pub fn capabilities(
    config: &ContainerConfig,
    defaults: &[String],
    bounding: &[String],
) -> Result<Vec<String>, SpecError> {
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let known = crio_config::KNOWN_CAPABILITIES;
    let bound: Vec<String> = bounding.iter().map(|c| normalise_cap(c)).collect();
    if sc.is_some_and(|s| s.privileged) {
        return Ok(bound.iter().map(|c| format!("CAP_{c}")).collect());
    }
    let mut caps: Vec<String> = defaults.iter().map(|c| normalise_cap(c)).collect();
    if let Some(c) = sc.and_then(|s| s.capabilities.as_ref()) {
        for (field, list) in [
            ("add_capabilities", &c.add_capabilities),
            ("drop_capabilities", &c.drop_capabilities),
        ] {
            for cap in list {
                let n = normalise_cap(cap);
                if n != "ALL" && !known.contains(&n.as_str()) {
                    return Err(invalid(
                        &format!("config.linux.security_context.capabilities.{field}"),
                        format!("{cap:?} is not a capability"),
                    ));
                }
            }
        }
        let drops: Vec<String> = c
            .drop_capabilities
            .iter()
            .map(|c| normalise_cap(c))
            .collect();
        if drops.iter().any(|d| d == "ALL") {
            caps.clear();
        } else {
            caps.retain(|c| !drops.contains(c));
        }
        for add in c.add_capabilities.iter().map(|c| normalise_cap(c)) {
            if add == "ALL" {
                caps = known.iter().map(|k| k.to_string()).collect();
            } else if !caps.contains(&add) {
                caps.push(add);
            }
        }
    }
    caps.retain(|c| bound.contains(c));
    caps.sort_by_key(|c| known.iter().position(|k| k == c));
    caps.dedup();
    Ok(caps.into_iter().map(|c| format!("CAP_{c}")).collect())
}

/// The process's user: run_as_username, run_as_user (and run_as_group),
/// else the image's `User`; supplementary groups from /etc/group plus the
/// requested ones.
pub fn process_user(
    config: &ContainerConfig,
    image: &Value,
    host: &Host,
) -> Result<(oci::User, Option<String>), SpecError> {
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let image_user = image["config"]["User"].as_str().unwrap_or("");
    let spec = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(u) = &sc.run_as_user {
        if u.value < 0 || u.value > i64::from(u32::MAX) {
            return Err(invalid(
                "config.linux.security_context.run_as_user",
                format!("{} is not a uid", u.value),
            ));
        }
        u.value.to_string()
    } else {
        image_user.to_string()
    };
    let field = if sc.run_as_username.is_empty() && sc.run_as_user.is_none() {
        "image config User"
    } else {
        "config.linux.security_context.run_as_user"
    };
    let r = user::resolve(&spec, &host.passwd, &host.group).map_err(|e| invalid(field, e))?;
    let mut gid = r.gid;
    if let Some(g) = &sc.run_as_group {
        if g.value < 0 || g.value > i64::from(u32::MAX) {
            return Err(invalid(
                "config.linux.security_context.run_as_group",
                format!("{} is not a gid", g.value),
            ));
        }
        gid = g.value as u32;
    }
    // SupplementalGroupsPolicy Strict (1) ignores the image's group file.
    let mut groups: Vec<u32> = if sc.supplemental_groups_policy == 1 {
        Vec::new()
    } else {
        r.groups
    };
    for g in &sc.supplemental_groups {
        let g = u32::try_from(*g).map_err(|_| {
            invalid(
                "config.linux.security_context.supplemental_groups",
                format!("{g} is not a gid"),
            )
        })?;
        groups.push(g);
    }
    groups.retain(|g| *g != gid);
    groups.sort_unstable();
    groups.dedup();
    Ok((
        oci::User {
            uid: r.uid,
            gid,
            additional_gids: groups,
        },
        r.home,
    ))
}

/// The image's `Volumes` (container paths), sorted.
pub fn image_volumes(image: &Value) -> Vec<String> {
    let mut v: Vec<String> = image["config"]["Volumes"]
        .as_object()
        .map(|m| m.keys().filter(|k| k.starts_with('/')).cloned().collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The signal that stops a container of `image` (its `StopSignal`:
/// `SIGUSR1`, `USR1` or `10`); SIGTERM when it names none. An unknown name
/// is an error naming it.
pub fn stop_signal(image: &Value) -> Result<u32, SpecError> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    let Some(text) = image["config"]["StopSignal"]
        .as_str()
        .filter(|s| !s.is_empty())
    else {
        return Ok(15);
    };
    let invalid = || SpecError::Invalid {
        field: "image StopSignal".into(),
        reason: format!("{text:?} is not a signal"),
    };
    if let Ok(n) = text.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n).ok_or_else(invalid);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32 + 1)
        .ok_or_else(invalid)
}

/// The OCI resources (memory, CPU, hugepages, unified) of CRI container
/// resources; what CreateContainer and UpdateContainerResources apply.
pub fn resources_of(resources: &LinuxContainerResources) -> Resources {
    let mut res = Resources::default();
    if resources.memory_limit_in_bytes > 0 || resources.memory_swap_limit_in_bytes > 0 {
        res.memory = Some(Memory {
            limit: (resources.memory_limit_in_bytes > 0).then_some(resources.memory_limit_in_bytes),
            swap: (resources.memory_swap_limit_in_bytes > 0)
                .then_some(resources.memory_swap_limit_in_bytes),
        });
    }
    let cpu = Cpu {
        shares: (resources.cpu_shares > 0).then_some(resources.cpu_shares as u64),
        quota: (resources.cpu_quota > 0).then_some(resources.cpu_quota),
        period: (resources.cpu_period > 0).then_some(resources.cpu_period as u64),
        cpus: (!resources.cpuset_cpus.is_empty()).then(|| resources.cpuset_cpus.clone()),
        mems: (!resources.cpuset_mems.is_empty()).then(|| resources.cpuset_mems.clone()),
    };
    if cpu != Cpu::default() {
        res.cpu = Some(cpu);
    }
    res.hugepage_limits = resources
        .hugepage_limits
        .iter()
        .map(|h| Hugepage {
            page_size: h.page_size.clone(),
            limit: h.limit,
        })
        .collect();
    res.unified = resources
        .unified
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    res
}

/// Builds the spec.
pub fn build(input: &Input) -> Result<Spec, SpecError> {
    let config = input.config;
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let privileged = sc.privileged;
    let pod_sc = input
        .pod
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    if privileged && !pod_sc.is_some_and(|s| s.privileged) {
        return Err(invalid(
            "config.linux.security_context.privileged",
            "the pod sandbox is not privileged (its linux.security_context.privileged is false)",
        ));
    }
    let pod_ns = pod_sc
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let hostname = std::fs::read_to_string(input.pod.files_dir.join("hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();

    let (user, home) = process_user(config, input.image, input.host)?;
    let mut env = environment(config, input.image, &input.defaults.env, &hostname);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home.unwrap_or_else(|| "/".into())));
    }
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else {
        input.image["config"]["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(
            "config.working_dir",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    let caps = capabilities(config, &input.defaults.capabilities, &input.host.bounding)?;
    let seccomp = seccomp_for(&sc, input.defaults, &caps)?;
    let rlimits = input
        .defaults
        .ulimits
        .iter()
        .map(|(name, soft, hard)| Rlimit {
            kind: format!("RLIMIT_{}", name.to_ascii_uppercase()),
            soft: if *soft < 0 { u64::MAX } else { *soft as u64 },
            hard: if *hard < 0 { u64::MAX } else { *hard as u64 },
        })
        .collect();
    let resources = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let oom = resources
        .oom_score_adj
        .max(input.host.min_oom_score_adj)
        .min(1000);

    let apparmor = lsm::apparmor_profile(
        &sc,
        input.host.lsm.apparmor,
        &input.defaults.apparmor_profile,
    )
    .map_err(|e| invalid("config.linux.security_context.apparmor", e))?;
    let selinux = lsm::selinux_labels(sc.selinux_options.as_ref(), input.host.lsm.selinux);
    let process = Process {
        terminal: config.tty,
        user,
        args: argv(config, input.image)?,
        env,
        cwd,
        capabilities: Capabilities {
            bounding: caps.clone(),
            effective: caps.clone(),
            permitted: caps,
            inheritable: Vec::new(),
            ambient: Vec::new(),
        },
        rlimits,
        no_new_privileges: sc.no_new_privs,
        oom_score_adj: Some(oom),
        apparmor_profile: apparmor,
        selinux_label: selinux.as_ref().map(|(process, _)| process.clone()),
    };

    let mounts = mounts(input, privileged)?;
    let mut namespaces = vec![Namespace {
        kind: "mount".into(),
        path: None,
    }];
    let join = |kind: &str, path: &Option<PathBuf>| {
        path.as_ref().map(|p| Namespace {
            kind: kind.into(),
            path: Some(p.display().to_string()),
        })
    };
    namespaces.extend(join("network", &input.pod.netns));
    namespaces.extend(join("ipc", &input.pod.ipcns));
    namespaces.extend(join("uts", &input.pod.utsns));
    let container_pid = sc
        .namespace_options
        .as_ref()
        .map(|n| n.pid)
        .unwrap_or(NamespaceMode::Container as i32);
    match NamespaceMode::try_from(container_pid).unwrap_or(NamespaceMode::Container) {
        NamespaceMode::Node => {}
        NamespaceMode::Pod | NamespaceMode::Target => match &input.pod.pidns {
            Some(p) => namespaces.push(Namespace {
                kind: "pid".into(),
                path: Some(p.display().to_string()),
            }),
            None => {
                return Err(invalid(
                    "config.linux.security_context.namespace_options.pid",
                    "the pod has no shared PID namespace (its PID mode is not POD)",
                ));
            }
        },
        NamespaceMode::Container => namespaces.push(Namespace {
            kind: "pid".into(),
            path: None,
        }),
    }
    let host_network = pod_ns.network == NamespaceMode::Node as i32;

    let mut sysctl = BTreeMap::new();
    if let Some(l) = &input.pod.config.linux {
        sysctl.extend(l.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    let mut res = Resources {
        devices: vec![DeviceRule {
            allow: privileged,
            kind: None,
            major: None,
            minor: None,
            access: Some("rwm".into()),
        }],
        ..resources_of(&resources)
    };
    if input.defaults.pids_limit > 0 {
        res.pids = Some(Pids {
            limit: input.defaults.pids_limit,
        });
    }

    let mut devices = Vec::new();
    for d in &config.devices {
        let Some(found) = input.host.devices.iter().find(|(p, ..)| *p == d.host_path) else {
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
            d.host_path.clone()
        } else {
            d.container_path.clone()
        };
        devices.push(Device {
            path,
            kind: found.1.clone(),
            major: found.2,
            minor: found.3,
            file_mode: 0o660,
            uid: 0,
            gid: 0,
        });
        res.devices.push(DeviceRule {
            allow: true,
            kind: Some(found.1.clone()),
            major: Some(found.2),
            minor: Some(found.3),
            access: Some(d.permissions.clone()),
        });
    }
    if privileged {
        for (path, kind, major, minor) in &input.host.devices {
            if !devices.iter().any(|d| &d.path == path) {
                devices.push(Device {
                    path: path.clone(),
                    kind: kind.clone(),
                    major: *major,
                    minor: *minor,
                    file_mode: 0o660,
                    uid: 0,
                    gid: 0,
                });
            }
        }
    }

    let cgroups_path = if input.defaults.systemd_cgroups {
        let parent = if input.pod.cgroup_parent.is_empty() {
            "system.slice"
        } else {
            input.pod.cgroup_parent.as_str()
        };
        format!("{parent}:crio:{}", input.id)
    } else {
        let parent = if input.pod.cgroup_parent.is_empty() {
            "/crio"
        } else {
            input.pod.cgroup_parent.as_str()
        };
        format!("{}/crio-{}", parent.trim_end_matches('/'), input.id)
    };
    let mut annotations: BTreeMap<String, String> = config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(
        "io.kubernetes.cri.container-type".into(),
        "container".into(),
    );
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        let masked = if sc.masked_paths.is_empty() {
            MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        } else {
            sc.masked_paths.clone()
        };
        let ro = if sc.readonly_paths.is_empty() {
            READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        } else {
            sc.readonly_paths.clone()
        };
        (masked, ro)
    };
    Ok(Spec {
        oci_version: oci::OCI_VERSION.into(),
        process,
        root: Root {
            path: input.rootfs.display().to_string(),
            readonly: sc.readonly_rootfs,
        },
        hostname: (!host_network).then_some(hostname),
        mounts,
        annotations,
        linux: Linux {
            namespaces,
            devices,
            cgroups_path,
            resources: res,
            sysctl,
            seccomp,
            rootfs_propagation: rootfs_propagation(&config.mounts),
            masked_paths: masked,
            readonly_paths: readonly,
            mount_label: selinux.map(|(_, mount)| mount),
        },
    })
}

/// The OCI seccomp filter the request asks for, resolved for the
/// container's capabilities `caps`: none unless a profile is named.
fn seccomp_for(
    sc: &crio_api::cri::LinuxContainerSecurityContext,
    defaults: &Defaults,
    caps: &[String],
) -> Result<Option<Value>, SpecError> {
    let field = "config.linux.security_context.seccomp.localhost_ref";
    let platform = seccomp::Platform::host();
    match &sc.seccomp {
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

fn mounts(input: &Input, privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let config = input.config;
    let ro_sys = if privileged { "rw" } else { "ro" };
    let mut out = vec![
        Mount::new("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        Mount::new(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        Mount::new(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        Mount::new(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        Mount::new(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_sys],
        ),
        Mount::new(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_sys],
        ),
    ];
    let shm = input
        .pod
        .shm
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    out.push(Mount::new(
        "/dev/shm",
        "bind",
        &shm.display().to_string(),
        &["rbind", "nosuid", "noexec", "nodev"],
    ));
    let user_paths: Vec<&str> = config
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    for file in ["hostname", "resolv.conf", "hosts"] {
        let dest = format!("/etc/{file}");
        if !user_paths.contains(&dest.as_str()) {
            let src = input.pod.files_dir.join(file);
            out.push(Mount::new(
                &dest,
                "bind",
                &src.display().to_string(),
                &["rbind", "rprivate", "rw"],
            ));
        }
    }
    for (i, m) in config.mounts.iter().enumerate() {
        let field = format!("config.mounts[{i}]");
        if !m.container_path.starts_with('/') {
            return Err(invalid(
                &format!("{field}.container_path"),
                format!("{:?} is not an absolute path", m.container_path),
            ));
        }
        if !Path::new(&m.host_path).is_absolute() {
            return Err(invalid(
                &format!("{field}.host_path"),
                format!("{:?} is not an absolute path", m.host_path),
            ));
        }
        if !Path::new(&m.host_path).exists() {
            return Err(SpecError::Missing {
                field: format!("{field}.host_path"),
                reason: format!("{} does not exist", m.host_path),
            });
        }
        let propagation = match MountPropagation::try_from(m.propagation)
            .unwrap_or(MountPropagation::PropagationPrivate)
        {
            MountPropagation::PropagationPrivate => "rprivate",
            MountPropagation::PropagationHostToContainer => "rslave",
            MountPropagation::PropagationBidirectional => "rshared",
        };
        let mut opts = vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }];
        if m.recursive_read_only {
            if !m.readonly {
                return Err(invalid(
                    &format!("{field}.recursive_read_only"),
                    "needs readonly",
                ));
            }
            if propagation != "rprivate" {
                return Err(invalid(
                    &format!("{field}.recursive_read_only"),
                    "needs private propagation",
                ));
            }
            opts.push("rro");
        }
        out.push(Mount::new(&m.container_path, "bind", &m.host_path, &opts));
    }
    Ok(out)
}

/// The rootfs propagation the request's mounts need: shared for a
/// bidirectional mount (so mounts made inside reach the host), slave for a
/// host-to-container one, the runtime's default otherwise.
fn rootfs_propagation(mounts: &[crio_api::cri::Mount]) -> String {
    let has = |p: MountPropagation| mounts.iter().any(|m| m.propagation == p as i32);
    if has(MountPropagation::PropagationBidirectional) {
        "rshared".into()
    } else if has(MountPropagation::PropagationHostToContainer) {
        "rslave".into()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests;
