//! Spec building, field by field.

use std::path::PathBuf;

use crio_api::cri::{
    Capability, ContainerConfig, Device, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, Mount as CriMount, NamespaceOption,
    PodSandboxConfig, SecurityProfile,
};
use serde_json::{Value, json};

use super::*;
use crate::oci::{Linux, LinuxDeviceType, Mount, Process, Spec};

fn image() -> ImageConfig {
    serde_json::from_value(json!({"Env": ["PATH=/bin", "GREETING=hello"], "Entrypoint": ["/bin/echo"], "Cmd": ["hi"], "User": "tester", "WorkingDir": "/work"})).unwrap()
}

fn process(spec: &Spec) -> &Process {
    spec.process().as_ref().unwrap()
}

fn linux(spec: &Spec) -> &Linux {
    spec.linux().as_ref().unwrap()
}

fn mounts(spec: &Spec) -> &[Mount] {
    spec.mounts().as_deref().unwrap()
}

/// The mount at `destination`.
fn mount_of<'a>(spec: &'a Spec, destination: &str) -> Option<&'a Mount> {
    mounts(spec)
        .iter()
        .find(|m| m.destination() == Path::new(destination))
}

fn options(m: &Mount) -> Vec<&str> {
    m.options().iter().flatten().map(String::as_str).collect()
}

/// The effective capabilities, in the order of the known capabilities.
fn effective(spec: &Spec) -> Vec<String> {
    let set = process(spec)
        .capabilities()
        .as_ref()
        .unwrap()
        .effective()
        .clone()
        .unwrap();
    let mut caps: Vec<String> = set
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    caps.sort_by_key(|c| {
        crio_config::KNOWN_CAPABILITIES
            .iter()
            .position(|k| c.strip_prefix("CAP_") == Some(k))
    });
    caps
}

fn seccomp_json(spec: &Spec) -> Value {
    serde_json::to_value(linux(spec).seccomp().as_ref().unwrap()).unwrap()
}

fn host() -> Host {
    Host {
        bounding: crio_config::KNOWN_CAPABILITIES
            .iter()
            .filter(|c| **c != "SYS_RESOURCE")
            .map(|c| c.to_string())
            .collect(),
        min_oom_score_adj: -500,
        passwd: "root:x:0:0::/root:/bin/sh\ntester:x:1000:1000::/home/tester:/bin/sh\n".into(),
        group: "tester:x:1000:\naudio:x:29:tester\n".into(),
        lsm: Default::default(),
        devices: vec![
            ("/dev/null".into(), LinuxDeviceType::C, 1, 3),
            ("/dev/fuse".into(), LinuxDeviceType::C, 10, 229),
        ],
    }
}

fn defaults() -> Defaults {
    Defaults {
        capabilities: vec!["CHOWN".into(), "KILL".into(), "NET_BIND_SERVICE".into()],
        env: vec!["FROM_DAEMON=1".into()],
        ulimits: vec![("nofile".into(), 1024, 2048)],
        pids_limit: 1024,
        apparmor_profile: "crio-default".into(),
        ..Defaults::default()
    }
}

fn with_sc(sc: LinuxContainerSecurityContext) -> ContainerConfig {
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            security_context: Some(sc),
            resources: None,
        }),
        ..ContainerConfig::default()
    }
}

/// Builds in a privileged pod (so privileged containers are allowed).
fn build_with(config: &ContainerConfig) -> Result<Spec, SpecError> {
    let pod = PodSandboxConfig {
        linux: Some(crio_api::cri::LinuxPodSandboxConfig {
            security_context: Some(crio_api::cri::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    build_in(&pod, config, &host())
}

fn build_in(pod: &PodSandboxConfig, config: &ContainerConfig, h: &Host) -> Result<Spec, SpecError> {
    let d = defaults();
    let img = image();
    build(&Input {
        id: "c1",
        config,
        image: &img,
        rootfs: Path::new("/rootfs"),
        pod: Pod {
            config: pod,
            files_dir: PathBuf::from("/run/pods/p1"),
            shm: Some("/run/pods/p1/shm".into()),
            netns: Some("/var/run/netns/p1".into()),
            ipcns: Some("/var/run/ipcns/p1".into()),
            utsns: Some("/var/run/utsns/p1".into()),
            pidns: None,
            cgroup_parent: "/kubepods/pod1".into(),
        },
        defaults: &d,
        host: h,
    })
}

#[test]
fn argv_follows_kubernetes_rules() {
    let img = image();
    let mut c = ContainerConfig::default();
    assert_eq!(argv(&c, &img).unwrap(), ["/bin/echo", "hi"]);
    c.args = vec!["a".into()];
    assert_eq!(argv(&c, &img).unwrap(), ["/bin/echo", "a"]);
    c.command = vec!["/bin/sh".into()];
    assert_eq!(argv(&c, &img).unwrap(), ["/bin/sh", "a"]);
    c.args.clear();
    assert_eq!(argv(&c, &img).unwrap(), ["/bin/sh"]);
    assert!(argv(&ContainerConfig::default(), &ImageConfig::default()).is_err());
}

#[test]
fn env_user_cwd_and_defaults() {
    let mut c = ContainerConfig::default();
    c.envs.push(KeyValue {
        key: "GREETING".into(),
        value: "bye".into(),
    });
    let spec = build_with(&c).unwrap();
    let env = process(&spec).env().as_ref().unwrap();
    assert!(env.contains(&"GREETING=bye".to_string()) && env.contains(&"PATH=/bin".to_string()));
    assert!(
        env.contains(&"FROM_DAEMON=1".to_string())
            && env.contains(&"HOME=/home/tester".to_string())
    );
    assert_eq!(env.iter().filter(|e| e.starts_with("GREETING=")).count(), 1);
    let user = process(&spec).user();
    assert_eq!((user.uid(), user.gid()), (1000, 1000));
    assert_eq!(user.additional_gids().as_deref(), Some(&[29][..]));
    assert_eq!(process(&spec).cwd(), Path::new("/work"));
    assert_eq!(
        process(&spec).rlimits().as_ref().unwrap()[0].typ(),
        oci::PosixRlimitType::RlimitNofile
    );
    let resources = linux(&spec).resources().as_ref().unwrap();
    assert_eq!(resources.pids().unwrap().limit(), 1024);
    assert_eq!(
        linux(&spec).cgroups_path().as_deref(),
        Some(Path::new("/kubepods/pod1/crio-c1"))
    );
    let source = |d: &str| mount_of(&spec, d).and_then(|m| m.source().clone());
    assert_eq!(
        source("/etc/resolv.conf"),
        Some("/run/pods/p1/resolv.conf".into())
    );
    assert_eq!(source("/dev/shm"), Some("/run/pods/p1/shm".into()));
    let kinds: Vec<_> = linux(&spec)
        .namespaces()
        .iter()
        .flatten()
        .map(|n| {
            let kind = serde_json::to_value(n.typ()).unwrap();
            (kind.as_str().unwrap().to_string(), n.path().is_some())
        })
        .collect();
    let kinds: Vec<_> = kinds.iter().map(|(k, p)| (k.as_str(), *p)).collect();
    assert_eq!(
        kinds,
        [
            ("mount", false),
            ("network", true),
            ("ipc", true),
            ("uts", true),
            ("pid", false)
        ]
    );
    assert_eq!(
        linux(&spec).masked_paths().as_ref().unwrap().len(),
        MASKED_PATHS.len()
    );
    assert!(linux(&spec).seccomp().is_none());
    // JSON field names are the OCI ones.
    let text = serde_json::to_string(&spec).unwrap();
    assert!(
        text.contains("\"ociVersion\"")
            && text.contains("\"cgroupsPath\"")
            && text.contains("\"noNewPrivileges\"")
    );
}

#[test]
fn run_as_user_group_and_strict_groups() {
    let spec = build_with(&with_sc(LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 0 }),
        run_as_group: Some(Int64Value { value: 5 }),
        supplemental_groups: vec![7, 5],
        ..Default::default()
    }))
    .unwrap();
    let user = process(&spec).user();
    assert_eq!((user.uid(), user.gid()), (0, 5));
    assert_eq!(user.additional_gids().as_deref(), Some(&[7][..]));
    let spec = build_with(&with_sc(LinuxContainerSecurityContext {
        run_as_username: "tester".into(),
        supplemental_groups_policy: 1,
        ..Default::default()
    }))
    .unwrap();
    assert!(process(&spec).user().additional_gids().is_none());
    let err = build_with(&with_sc(LinuxContainerSecurityContext {
        run_as_username: "ghost".into(),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(
        err.to_string().contains("run_as_user") && err.to_string().contains("ghost"),
        "{err}"
    );
}

#[test]
fn run_as_group_needs_a_user() {
    let err = build_with(&with_sc(LinuxContainerSecurityContext {
        run_as_group: Some(Int64Value { value: 5 }),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(matches!(err, SpecError::Invalid { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("config.linux.security_context.run_as_group"),
        "{err}"
    );
    let spec = build_with(&with_sc(LinuxContainerSecurityContext {
        run_as_username: "tester".into(),
        run_as_group: Some(Int64Value { value: 5 }),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(process(&spec).user().gid(), 5);
}

#[test]
fn privileged_containers_run_unconfined_whatever_profile_they_name() {
    for profile_type in [0, 2] {
        let spec = build_with(&with_sc(LinuxContainerSecurityContext {
            privileged: true,
            seccomp: Some(SecurityProfile {
                profile_type,
                localhost_ref: "/nonexistent/profile.json".into(),
            }),
            ..Default::default()
        }))
        .unwrap();
        assert!(linux(&spec).seccomp().is_none(), "type {profile_type}");
    }
}

#[test]
fn capabilities_add_drop_all_and_the_bounding_set() {
    let caps = |add: &[&str], drop: &[&str], privileged: bool| {
        let c = with_sc(LinuxContainerSecurityContext {
            privileged,
            capabilities: Some(Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        });
        build_with(&c).map(|s| effective(&s))
    };
    assert_eq!(
        caps(&[], &[], false).unwrap(),
        ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(
        caps(&["NET_ADMIN"], &["KILL"], false).unwrap(),
        ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]
    );
    assert_eq!(
        caps(&["CAP_SYS_TIME"], &["ALL"], false).unwrap(),
        ["CAP_SYS_TIME"]
    );
    let all = caps(&["ALL"], &[], false).unwrap();
    assert!(
        !all.contains(&"CAP_SYS_RESOURCE".to_string()),
        "beyond the daemon's bounding set"
    );
    assert_eq!(all.len(), crio_config::KNOWN_CAPABILITIES.len() - 1);
    assert_eq!(caps(&[], &[], true).unwrap(), all);
    assert!(
        caps(&["FLY"], &[], false)
            .unwrap_err()
            .to_string()
            .contains("add_capabilities")
    );
}

#[test]
fn conflicting_options_are_refused_naming_the_field() {
    let privileged = with_sc(LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    });
    let err = build_in(&PodSandboxConfig::default(), &privileged, &host()).unwrap_err();
    assert!(
        err.to_string().contains("security_context.privileged")
            && err.to_string().contains("pod sandbox is not privileged"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut c = ContainerConfig::default();
    c.mounts.push(CriMount {
        container_path: "/data".into(),
        host_path: tmp.path().display().to_string(),
        readonly: true,
        recursive_read_only: true,
        propagation: 1,
        ..Default::default()
    });
    let err = build_with(&c).unwrap_err().to_string();
    assert!(
        err.contains("config.mounts[0].recursive_read_only") && err.contains("private"),
        "{err}"
    );
}

#[test]
fn privileged_security_and_resources() {
    let spec = build_with(&with_sc(LinuxContainerSecurityContext {
        privileged: true,
        ..Default::default()
    }))
    .unwrap();
    let l = linux(&spec);
    assert!(l.masked_paths().is_none() && l.readonly_paths().is_none());
    assert!(
        l.devices()
            .iter()
            .flatten()
            .any(|d| d.path() == Path::new("/dev/fuse"))
    );
    assert!(l.resources().as_ref().unwrap().devices().as_ref().unwrap()[0].allow());
    assert!(options(mount_of(&spec, "/sys").unwrap()).contains(&"rw"));

    let mut c = with_sc(LinuxContainerSecurityContext {
        no_new_privs: true,
        readonly_rootfs: true,
        seccomp: Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    });
    c.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        cpu_shares: 512,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: -999,
        cpuset_cpus: "0".into(),
        ..Default::default()
    });
    let spec = build_with(&c).unwrap();
    assert!(
        process(&spec).no_new_privileges() == Some(true)
            && spec.root().as_ref().unwrap().readonly() == Some(true)
    );
    assert_eq!(
        process(&spec).oom_score_adj(),
        Some(-500),
        "clamped to the daemon's own"
    );
    let resources = linux(&spec).resources().as_ref().unwrap();
    let cpu = resources.cpu().as_ref().unwrap();
    assert_eq!(
        (
            cpu.shares(),
            cpu.quota(),
            cpu.period(),
            cpu.cpus().as_deref()
        ),
        (Some(512), Some(50_000), Some(100_000), Some("0"))
    );
    assert_eq!(resources.memory().unwrap().limit(), Some(64 << 20));
    assert_eq!(seccomp_json(&spec)["defaultAction"], "SCMP_ACT_ERRNO");
}

#[test]
fn bad_requests_name_the_field() {
    let mut c = ContainerConfig::default();
    c.mounts.push(CriMount {
        container_path: "relative".into(),
        host_path: "/tmp".into(),
        ..Default::default()
    });
    assert!(
        build_with(&c)
            .unwrap_err()
            .to_string()
            .contains("config.mounts[0].container_path")
    );
    c.mounts[0] = CriMount {
        container_path: "/data".into(),
        host_path: "/nonexistent/x".into(),
        ..Default::default()
    };
    assert!(
        matches!(build_with(&c).unwrap_err(), SpecError::Missing { field, .. } if field == "config.mounts[0].host_path")
    );
    let mut c = ContainerConfig::default();
    c.devices.push(Device {
        container_path: "/dev/x".into(),
        host_path: "/dev/nope".into(),
        permissions: "rw".into(),
    });
    assert!(
        build_with(&c)
            .unwrap_err()
            .to_string()
            .contains("config.devices")
    );
    c.devices[0] = Device {
        container_path: "/dev/x".into(),
        host_path: "/dev/null".into(),
        permissions: "rwx".into(),
    };
    assert!(
        build_with(&c)
            .unwrap_err()
            .to_string()
            .contains("permissions")
    );
    let c = with_sc(LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: 2,
            localhost_ref: "/nonexistent/profile.json".into(),
        }),
        ..Default::default()
    });
    assert!(build_with(&c).unwrap_err().to_string().contains("seccomp"));
    let c = with_sc(LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: 0,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(
        build_with(&c)
            .unwrap_err()
            .to_string()
            .contains("namespace_options.pid")
    );
    let c = ContainerConfig {
        working_dir: "work".into(),
        ..ContainerConfig::default()
    };
    assert!(
        build_with(&c)
            .unwrap_err()
            .to_string()
            .contains("working_dir")
    );
}

#[test]
fn mounts_with_propagation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = ContainerConfig::default();
    c.mounts.push(CriMount {
        container_path: "/data".into(),
        host_path: tmp.path().display().to_string(),
        readonly: true,
        propagation: 1,
        ..Default::default()
    });
    let spec = build_with(&c).unwrap();
    let m = mount_of(&spec, "/data").unwrap();
    assert_eq!(options(m), ["rbind", "rslave", "ro"]);
    assert_eq!(linux(&spec).rootfs_propagation().as_deref(), Some("rslave"));
    c.mounts.push(CriMount {
        container_path: "/both".into(),
        host_path: tmp.path().display().to_string(),
        propagation: 2,
        ..Default::default()
    });
    let spec = build_with(&c).unwrap();
    let m = mount_of(&spec, "/both").unwrap();
    assert_eq!(options(m), ["rbind", "rshared", "rw"]);
    assert_eq!(
        linux(&spec).rootfs_propagation().as_deref(),
        Some("rshared")
    );
}

#[test]
fn stop_signals_from_the_image() {
    let image = |s: &str| -> ImageConfig {
        serde_json::from_value(serde_json::json!({"StopSignal": s})).unwrap()
    };
    assert_eq!(stop_signal(&ImageConfig::default()).unwrap(), 15);
    assert_eq!(stop_signal(&image("SIGUSR1")).unwrap(), 10);
    assert_eq!(stop_signal(&image("quit")).unwrap(), 3);
    assert_eq!(stop_signal(&image("SIGWINCH")).unwrap(), 28);
    assert_eq!(stop_signal(&image("9")).unwrap(), 9);
    let err = stop_signal(&image("SIGNOPE")).unwrap_err().to_string();
    assert!(err.contains("SIGNOPE"), "{err}");
    assert!(stop_signal(&image("0")).is_err());
}

#[test]
fn image_volumes_are_absolute_paths_in_order() {
    let image: ImageConfig = serde_json::from_value(
        serde_json::json!({"Volumes": {"/var/lib/b": {}, "/a": {}, "relative": {}}}),
    )
    .unwrap();
    assert_eq!(image_volumes(&image), ["/a", "/var/lib/b"]);
    assert!(image_volumes(&ImageConfig::default()).is_empty());
}

#[test]
fn security_modules_apply_where_the_host_has_them() {
    let c = with_sc(LinuxContainerSecurityContext {
        selinux_options: Some(crio_api::cri::SeLinuxOption {
            level: "s0:c7,c9".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let spec = build_with(&c).unwrap();
    assert_eq!(process(&spec).apparmor_profile(), &None);
    assert_eq!(process(&spec).selinux_label(), &None);
    assert_eq!(linux(&spec).mount_label(), &None);
    let mut h = host();
    h.lsm = crate::lsm::Lsm {
        apparmor: true,
        selinux: true,
    };
    let spec = build_in(&PodSandboxConfig::default(), &c, &h).unwrap();
    assert_eq!(
        process(&spec).apparmor_profile().as_deref(),
        Some("crio-default")
    );
    assert_eq!(
        process(&spec).selinux_label().as_deref(),
        Some("system_u:system_r:container_t:s0:c7,c9")
    );
    assert_eq!(
        linux(&spec).mount_label().as_deref(),
        Some("system_u:object_r:container_file_t:s0:c7,c9")
    );
}

/// What a seccomp filter in OCI form answers to `name` called with `args`:
/// the action and errno of the first rule naming it whose argument
/// conditions all hold, else the default action (errno EPERM unless set).
fn verdict(filter: &Value, name: &str, args: [u64; 6]) -> (String, Option<u64>) {
    let holds = |c: &Value| {
        let arg = args[c["index"].as_u64().unwrap() as usize];
        let value = c["value"].as_u64().unwrap();
        let two = c["valueTwo"].as_u64().unwrap_or(0);
        match c["op"].as_str().unwrap() {
            "SCMP_CMP_NE" => arg != value,
            "SCMP_CMP_LT" => arg < value,
            "SCMP_CMP_LE" => arg <= value,
            "SCMP_CMP_EQ" => arg == value,
            "SCMP_CMP_GE" => arg >= value,
            "SCMP_CMP_GT" => arg > value,
            "SCMP_CMP_MASKED_EQ" => arg & value == two,
            op => panic!("unknown op {op}"),
        }
    };
    let errno =
        |action: &str, ret: &Value| (action == "SCMP_ACT_ERRNO").then(|| ret.as_u64().unwrap_or(1));
    for rule in filter["syscalls"].as_array().unwrap() {
        let named = rule["names"].as_array().unwrap().iter().any(|n| n == name);
        let conditions = rule["args"].as_array().cloned().unwrap_or_default();
        if named && conditions.iter().all(holds) {
            let action = rule["action"].as_str().unwrap();
            return (action.to_string(), errno(action, &rule["errnoRet"]));
        }
    }
    let action = filter["defaultAction"].as_str().unwrap();
    (
        action.to_string(),
        errno(action, &filter["defaultErrnoRet"]),
    )
}

fn runtime_default(add: &[&str]) -> Value {
    let c = with_sc(LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: add.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }),
        seccomp: Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    });
    seccomp_json(&build_with(&c).unwrap())
}

const CLONE_NEWUSER: u64 = 0x1000_0000;
const SIGCHLD: u64 = 17;
/// The flags glibc's pthread_create passes to clone.
const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00;

#[test]
fn runtime_default_allows_only_what_containers_need() {
    let filter = runtime_default(&[]);
    let allow = || ("SCMP_ACT_ALLOW".to_string(), None);
    let refused = |errno| ("SCMP_ACT_ERRNO".to_string(), Some(errno));
    assert_eq!(filter["defaultAction"], "SCMP_ACT_ERRNO");
    for name in [
        "read",
        "openat",
        "execve",
        "futex",
        "epoll_pwait",
        "exit_group",
    ] {
        assert_eq!(verdict(&filter, name, [0; 6]), allow(), "{name}");
    }
    // Not in the list: refused with EPERM, whatever the arguments.
    for name in [
        "io_uring_setup",
        "io_uring_enter",
        "keyctl",
        "add_key",
        "userfaultfd",
    ] {
        assert_eq!(verdict(&filter, name, [0; 6]), refused(1), "{name}");
    }
    // Without CAP_SYS_ADMIN: fork and threads, but no new namespace.
    assert_eq!(verdict(&filter, "clone", [SIGCHLD, 0, 0, 0, 0, 0]), allow());
    assert_eq!(
        verdict(&filter, "clone", [CLONE_THREAD_FLAGS, 0, 0, 0, 0, 0]),
        allow()
    );
    assert_eq!(
        verdict(&filter, "clone", [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0, 0]),
        refused(1)
    );
    // clone3 cannot be filtered by flags (they are behind a pointer): ENOSYS
    // makes glibc fall back to clone.
    assert_eq!(verdict(&filter, "clone3", [0; 6]), refused(38));
    for name in ["unshare", "setns", "mount", "umount2", "kcmp", "reboot"] {
        assert_eq!(verdict(&filter, name, [0; 6]), refused(1), "{name}");
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            filter["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
    }
}

#[test]
fn runtime_default_follows_the_container_capabilities() {
    let filter = runtime_default(&["SYS_ADMIN", "SYS_PTRACE"]);
    let allow = || ("SCMP_ACT_ALLOW".to_string(), None);
    assert_eq!(
        verdict(&filter, "clone", [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0, 0]),
        allow()
    );
    for name in [
        "clone3", "unshare", "setns", "mount", "umount2", "kcmp", "ptrace",
    ] {
        assert_eq!(verdict(&filter, name, [0; 6]), allow(), "{name}");
    }
    // A capability the container does not hold still refuses its calls.
    assert_eq!(
        verdict(&filter, "reboot", [0; 6]),
        ("SCMP_ACT_ERRNO".to_string(), Some(1))
    );
    assert_eq!(
        verdict(&filter, "io_uring_setup", [0; 6]),
        ("SCMP_ACT_ERRNO".to_string(), Some(1))
    );
}

#[test]
fn seccomp_profile_from_the_config_is_runtime_default() {
    let c = with_sc(LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    });
    let d = Defaults {
        seccomp_default: Some(
            seccomp::Profile::parse(r#"{"defaultAction": "SCMP_ACT_LOG"}"#).unwrap(),
        ),
        ..defaults()
    };
    let img = image();
    let pod = PodSandboxConfig::default();
    let spec = build(&Input {
        id: "c1",
        config: &c,
        image: &img,
        rootfs: Path::new("/rootfs"),
        pod: Pod {
            config: &pod,
            files_dir: PathBuf::from("/run/pods/p1"),
            shm: None,
            netns: None,
            ipcns: None,
            utsns: None,
            pidns: None,
            cgroup_parent: String::new(),
        },
        defaults: &d,
        host: &host(),
    })
    .unwrap();
    assert_eq!(
        verdict(&seccomp_json(&spec), "unshare", [0; 6]),
        ("SCMP_ACT_LOG".to_string(), None)
    );
}

/// `value` with its capability lists sorted: oci-spec holds capabilities
/// as sets, so their order in config.json is not fixed.
fn sorted_capabilities(mut value: Value) -> Value {
    if let Some(sets) = value["process"]["capabilities"].as_object_mut() {
        for list in sets.values_mut() {
            if let Some(list) = list.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    value
}

/// The config.json of a plain and of a privileged container, field for
/// field as crio-rs wrote it before it used oci-spec's types.
#[test]
fn config_json_is_what_runc_got_before() {
    let cases = [
        (
            build_with(&ContainerConfig::default()).unwrap(),
            include_str!("testdata/default.json"),
        ),
        (
            build_with(&with_sc(LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            }))
            .unwrap(),
            include_str!("testdata/privileged.json"),
        ),
    ];
    for (spec, golden) in cases {
        let golden: Value = serde_json::from_str(golden).unwrap();
        assert_eq!(
            sorted_capabilities(serde_json::to_value(&spec).unwrap()),
            sorted_capabilities(golden)
        );
    }
}
