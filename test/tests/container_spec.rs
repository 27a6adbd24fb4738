//! What a container sees, observed from inside it: user and groups, env,
//! working directory, hostname, capabilities, no_new_privs, seccomp,
//! readonly rootfs, masked paths, sysctls, read-only bind mounts, cgroup
//! limits; a privileged container; bad requests.

use std::path::Path;

use crio_api::client::CriClient;
use crio_api::cri::{
    Capability, ContainerConfig, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, Mount, NamespaceMode, SecurityProfile,
    security_profile::ProfileType,
};
use crio_test::containers::{
    Setup, container, create, exec_sh as exec, remove_pod, run_pod, setup, setup_with_files,
};
use crio_test::pods::{pod_config, privileged_pod_config, test_cgroup_parent};
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;

async fn out(client: &mut CriClient, id: &str, script: &str) -> String {
    let (code, stdout, stderr) = exec(client, id, script).await;
    assert_eq!(code, 0, "{script}: {stderr}");
    stdout
}

/// Makes `dir` a mount point of its own (a bind mount onto itself) with the
/// given propagation (cleaned up with the daemon's directory).
fn mount_point(dir: &Path, propagation: nix::mount::MsFlags) {
    use nix::mount::{MsFlags, mount};
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
    mount(None::<&str>, dir, None::<&str>, propagation, None::<&str>).unwrap();
}

async fn start(client: &mut CriClient, pod: &str, config: ContainerConfig) -> String {
    let id = create(client, pod, config).await.unwrap();
    crio_test::containers::start_container(client, id.clone()).await;
    id
}

/// A capability set's bits from a /proc/PID/status line.
fn caps(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("{field} not in {status}"))
}

#[tokio::test]
async fn a_container_sees_what_its_config_asks_for() {
    let mut s = setup().await;
    let shared = s.world.daemon.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("hello"), "from the host").unwrap();
    let mut pod = pod_config("observe", POD, POD);
    pod.linux.as_mut().unwrap().sysctls = [(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "1000".to_string(),
    )]
    .into();
    let pod_id = run_pod(&mut s.client, pod).await;
    let mut config = container("watcher", &s.images.busybox.reference, &["sleep", "1000"]);
    config.envs = vec![KeyValue {
        key: "FOO".into(),
        value: "bar".into(),
    }];
    config.working_dir = "/tmp".into();
    config.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: shared.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 256,
            ..Default::default()
        }),
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 1000 }),
            supplemental_groups: vec![29],
            capabilities: Some(Capability {
                add_capabilities: vec!["NET_RAW".into()],
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            }),
            readonly_rootfs: true,
            no_new_privs: true,
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
    });
    let id = start(&mut s.client, &pod_id, config).await;
    let c = &mut s.client;

    assert_eq!(out(c, &id, "id -u; id -g").await, "1000\n1000");
    let groups = out(c, &id, "id -G").await;
    assert!(groups.split(' ').any(|g| g == "29"), "groups {groups}");
    assert_eq!(out(c, &id, "echo $FOO").await, "bar");
    assert_eq!(out(c, &id, "pwd").await, "/tmp");
    assert_eq!(out(c, &id, "hostname").await, "observe");
    let status = out(c, &id, "cat /proc/self/status").await;
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let bounding = caps(&status, "CapBnd:");
    assert_eq!(bounding & 1, 0, "CHOWN (bit 0) was dropped");
    assert_ne!(bounding & (1 << 13), 0, "NET_RAW (bit 13) was added");
    let (code, _, err) = exec(c, &id, "touch /newfile").await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only"), "{err}");
    // A system call the RuntimeDefault profile blocks (creating a user
    // namespace needs no capability; image_volumes_exist_in_the_container
    // shows it works without a profile).
    let (code, _, err) = exec(c, &id, "unshare -U true").await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    // Masked: /proc/timer_list (present on this host) reads empty.
    assert_eq!(
        out(c, &id, "head -c 16 /proc/timer_list | wc -c").await,
        "0"
    );
    assert_eq!(
        out(c, &id, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").await,
        "1000"
    );
    assert_eq!(out(c, &id, "cat /data/hello").await, "from the host");
    let (code, _, _) = exec(c, &id, "echo x > /data/new").await;
    assert_ne!(code, 0, "a read-only mount was writable");
    let cgroup = |controller: &str, file: &str| {
        std::fs::read_to_string(
            std::path::Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(test_cgroup_parent().trim_start_matches('/'))
                .join(format!("crio-{id}"))
                .join(file),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(
        cgroup("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup("cpu", "cpu.shares"), "256");
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn a_privileged_container_has_every_capability_the_daemon_has() {
    let mut s = setup().await;
    let pod_id = run_pod(&mut s.client, privileged_pod_config("privileged")).await;
    let mut config = container("root", &s.images.busybox.reference, &["sleep", "1000"]);
    config.linux = Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
    });
    let id = start(&mut s.client, &pod_id, config).await;
    let inside = out(&mut s.client, &id, "cat /proc/self/status").await;
    let daemon_pid = s.world.daemon.pid().unwrap();
    let daemon = std::fs::read_to_string(format!("/proc/{daemon_pid}/status")).unwrap();
    assert_eq!(caps(&inside, "CapEff:"), caps(&daemon, "CapBnd:"));
    // Host devices and no masked paths.
    let host_devices = std::fs::read_dir("/dev").unwrap().count();
    let devices: usize = out(&mut s.client, &id, "ls /dev | wc -l")
        .await
        .parse()
        .unwrap();
    assert!(
        devices + 10 >= host_devices,
        "{devices} devices of the host's {host_devices}"
    );
    let (_, timers, _) = exec(&mut s.client, &id, "head -c 16 /proc/timer_list | wc -c").await;
    assert_eq!(
        timers, "16",
        "/proc/timer_list is masked in a privileged container"
    );
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_leave_nothing() {
    let mut s = setup().await;
    let pod_id = run_pod(&mut s.client, pod_config("bad", POD, POD)).await;
    let image = s.images.busybox.reference.clone();
    let err = create(
        &mut s.client,
        "no-such-pod",
        container("c", &image, &["true"]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = create(
        &mut s.client,
        &pod_id,
        container("c", "127.0.0.1:1/absent:1", &["true"]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.message().contains("config.image"), "{err}");
    let mut bad_mount = container("c", &image, &["true"]);
    bad_mount.mounts = vec![Mount {
        container_path: "/x".into(),
        host_path: "/nonexistent/for/sure".into(),
        ..Default::default()
    }];
    let err = create(&mut s.client, &pod_id, bad_mount).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::InvalidArgument | Code::NotFound),
        "{err}"
    );
    assert!(err.message().contains("/nonexistent/for/sure"), "{err}");
    // Conflicting options: a privileged container in a pod that is not.
    let mut privileged = container("c", &image, &["true"]);
    privileged.linux = Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
    });
    let err = create(&mut s.client, &pod_id, privileged)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message()
            .contains("config.linux.security_context.privileged"),
        "{err}"
    );
    let mut bad_profile = container("c", &image, &["true"]);
    bad_profile.linux = Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "/nonexistent/profile.json".into(),
            }),
            ..Default::default()
        }),
    });
    let err = create(&mut s.client, &pod_id, bad_profile)
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::InvalidArgument | Code::NotFound),
        "{err}"
    );
    assert!(err.message().contains("profile.json"), "{err}");
    // Nothing was left: no bundle, no record, no mount.
    let leftovers = |rel: &str| {
        std::fs::read_dir(s.world.daemon.path(rel))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(leftovers("run/containers"), 0);
    assert_eq!(leftovers("root/containers"), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = s.world.daemon.path("run/containers").display().to_string();
    assert!(!mounts.contains(&ours));
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn stop_sends_the_image_stop_signal_first() {
    let mut s = setup().await;
    let image = s.images.env.reference.clone();
    crio_test::cri::pull(&mut s.client, &image).await.unwrap();
    let pod_id = run_pod(&mut s.client, pod_config("stopsig", POD, POD)).await;
    let trap = "trap 'exit 42' USR1; while :; do sleep 0.1; done";
    let id = start(
        &mut s.client,
        &pod_id,
        container("trapper", &image, &["sh", "-c", trap]),
    )
    .await;
    // The trap is set once the loop runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !out(&mut s.client, &id, "ps").await.contains("sleep") {
        assert!(std::time::Instant::now() < deadline, "the loop never ran");
    }
    s.client
        .runtime
        .stop_container(crio_api::cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 30,
        })
        .await
        .unwrap();
    let st = crio_test::containers::wait_exited(&mut s.client, &id).await;
    assert_eq!(
        st.exit_code, 42,
        "SIGUSR1 (the image's STOPSIGNAL) was not sent"
    );
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn image_volumes_exist_in_the_container() {
    let mut s = setup().await;
    let image = s.images.volume.reference.clone();
    crio_test::cri::pull(&mut s.client, &image).await.unwrap();
    let pod_id = run_pod(&mut s.client, pod_config("volumes", POD, POD)).await;
    let id = start(
        &mut s.client,
        &pod_id,
        container("vol", &image, &["sleep", "1000"]),
    )
    .await;
    // image_volumes = "mkdir" (the default): a writable directory.
    assert_eq!(
        out(
            &mut s.client,
            &id,
            "test -d /data && touch /data/ok && echo yes"
        )
        .await,
        "yes"
    );
    // Without a seccomp profile (Unconfined) what RuntimeDefault blocks works.
    assert_eq!(
        out(&mut s.client, &id, "unshare -U true && echo unconfined").await,
        "unconfined"
    );
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn mount_propagation_each_way_and_its_host_check() {
    use nix::mount::{MsFlags, mount};
    let mut s = setup().await;
    // A shared mount point on the host (cleaned up with the daemon's dir).
    let source = s.world.daemon.path("propagated");
    std::fs::create_dir_all(&source).unwrap();
    mount_point(&source, MsFlags::MS_SHARED);
    let pod_id = run_pod(&mut s.client, privileged_pod_config("propagation")).await;
    let mut config = container("seer", &s.images.busybox.reference, &["sleep", "1000"]);
    config.mounts = vec![
        Mount {
            container_path: "/slave".into(),
            host_path: source.display().to_string(),
            propagation: crio_api::cri::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        },
        Mount {
            container_path: "/private".into(),
            host_path: source.display().to_string(),
            ..Default::default()
        },
    ];
    let id = start(&mut s.client, &pod_id, config).await;
    // Mounted on the host after the container started.
    let later = source.join("later");
    std::fs::create_dir_all(&later).unwrap();
    mount(
        Some("tmpfs"),
        &later,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(later.join("marker"), "propagated").unwrap();
    assert_eq!(
        out(&mut s.client, &id, "cat /slave/later/marker").await,
        "propagated"
    );
    let (_, private, _) = exec(&mut s.client, &id, "cat /private/later/marker").await;
    assert_ne!(
        private, "propagated",
        "a private mount received a host mount"
    );

    // Bidirectional: a mount made inside (privileged) shows on the host.
    let bidirectional = |host: &Path| Mount {
        container_path: "/both".into(),
        host_path: host.display().to_string(),
        propagation: crio_api::cri::MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    };
    let mut maker = container("maker", &s.images.busybox.reference, &["sleep", "1000"]);
    maker.mounts = vec![bidirectional(&source)];
    maker.linux = Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
    });
    let maker_id = start(&mut s.client, &pod_id, maker.clone()).await;
    assert_eq!(
        out(
            &mut s.client,
            &maker_id,
            "mkdir -p /both/inner && mount -t tmpfs tmpfs /both/inner && echo made > /both/inner/f && echo ok"
        )
        .await,
        "ok"
    );
    assert_eq!(
        std::fs::read_to_string(source.join("inner/f")).unwrap(),
        "made\n"
    );

    // A private host mount cannot give bidirectional propagation: refused,
    // naming the field and the mount.
    let private_dir = s.world.daemon.path("private-mount");
    std::fs::create_dir_all(&private_dir).unwrap();
    mount_point(&private_dir, MsFlags::MS_PRIVATE);
    let mut refused = maker;
    refused.metadata.as_mut().unwrap().name = "refused".into();
    refused.mounts = vec![bidirectional(&private_dir)];
    let err = create(&mut s.client, &pod_id, refused).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("config.mounts[0].propagation")
            && err.message().contains("not a shared mount"),
        "{err}"
    );
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn devices_come_with_their_permissions() {
    use crio_api::cri::Device;
    let mut s = setup().await;
    let pod_id = run_pod(&mut s.client, pod_config("devices", POD, POD)).await;
    let mut config = container("dev", &s.images.busybox.reference, &["sleep", "1000"]);
    let device = |host: &str, inside: &str, permissions: &str| Device {
        container_path: inside.into(),
        host_path: host.into(),
        permissions: permissions.into(),
    };
    // Neither is among the runtime's always-allowed devices.
    config.devices = vec![
        device("/dev/loop-control", "/dev/read-only", "r"),
        device("/dev/fuse", "/dev/read-write", "rw"),
    ];
    let id = start(&mut s.client, &pod_id, config).await;
    let c = &mut s.client;
    assert_eq!(
        out(c, &id, "stat -c '%F %t:%T' /dev/read-only /dev/read-write").await,
        "character special file a:ed\ncharacter special file a:e5"
    );
    assert_eq!(
        out(c, &id, ": < /dev/read-only && echo readable").await,
        "readable"
    );
    let (code, _, err) = exec(c, &id, ": > /dev/read-only").await;
    assert_ne!(code, 0, "a read-only device opened for writing");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(
        out(c, &id, ": > /dev/read-write && echo writable").await,
        "writable"
    );
    // The device cgroup holds exactly those rights.
    let list = std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/devices")
            .join(test_cgroup_parent().trim_start_matches('/'))
            .join(format!("crio-{id}"))
            .join("devices.list"),
    )
    .unwrap();
    assert!(
        list.lines().any(|l| l == "c 10:237 r") && list.lines().any(|l| l == "c 10:229 rw"),
        "{list}"
    );
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn supplemental_groups_merge_or_strict_and_the_status_tells() {
    use crio_api::cri::StatusRequest;
    let mut s = setup().await;
    let pod_id = run_pod(&mut s.client, pod_config("groups", POD, POD)).await;
    // The image's /etc/group makes uid 1000 a member of group 29.
    for (name, policy, expected) in [
        ("merge", 0, vec![29, 1000, 4000]),
        ("strict", 1, vec![1000, 4000]),
    ] {
        let mut config = container(name, &s.images.busybox.reference, &["sleep", "1000"]);
        config.linux = Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 1000 }),
                supplemental_groups: vec![4000],
                supplemental_groups_policy: policy,
                ..Default::default()
            }),
        });
        let id = start(&mut s.client, &pod_id, config).await;
        let mut groups: Vec<i64> = out(&mut s.client, &id, "id -G")
            .await
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        groups.sort_unstable();
        assert_eq!(groups, expected, "{name}");
        let user = crio_test::containers::status(&mut s.client, &id)
            .await
            .user
            .and_then(|u| u.linux)
            .unwrap();
        assert_eq!(
            (user.uid, user.gid, user.supplemental_groups),
            (1000, 1000, expected),
            "{name}"
        );
    }
    let features = s
        .client
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .features
        .unwrap();
    assert!(features.supplemental_groups_policy);
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn security_modules_the_host_lacks_are_reported_not_applied() {
    use crio_api::cri::{ContainerStatusRequest, SeLinuxOption, StatusRequest};
    let registry = crio_test::Registry::start().unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    let daemon = crio_test::world::daemon_for(
        &registry,
        "",
        "",
        &[("conf.d/50-selinux.conf", "[crio.runtime]\nselinux = true\n")],
    )
    .unwrap();
    let mut client = daemon.client().await.unwrap();
    crio_test::cri::pull(&mut client, &images.busybox.reference)
        .await
        .unwrap();
    // This host has neither AppArmor nor SELinux: the Status says so.
    let info = client
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
        .info;
    let security: serde_json::Value = serde_json::from_str(&info["security"]).unwrap();
    assert!(
        !Path::new("/sys/module/apparmor/parameters/enabled").exists()
            && !Path::new("/sys/fs/selinux/enforce").exists(),
        "this test expects a host without AppArmor and SELinux"
    );
    for module in ["apparmor", "selinux"] {
        assert!(
            security[module]
                .as_str()
                .unwrap()
                .starts_with("unavailable"),
            "{security}"
        );
    }

    let node = NamespaceMode::Node as i32;
    let pod_id = run_pod(&mut client, pod_config("lsm", node, POD)).await;
    let mut config = container("confined", &images.busybox.reference, &["sleep", "1000"]);
    config.linux = Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "localhost/my-profile".into(),
            }),
            selinux_options: Some(SeLinuxOption {
                level: "s0:c1,c2".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    });
    let id = start(&mut client, &pod_id, config).await;
    let status = client
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    let spec = &info["runtimeSpec"];
    assert!(spec["process"].get("apparmorProfile").is_none(), "{spec}");
    assert!(spec["process"].get("selinuxLabel").is_none(), "{spec}");
    let log = daemon.log();
    for module in ["AppArmor", "SELinux"] {
        assert!(
            log.contains(&format!(
                "{module} options requested but {module} is unavailable on this host"
            )),
            "no warning about {module}"
        );
    }
    remove_pod(&mut client, &pod_id).await;
}

#[tokio::test]
async fn image_volumes_bind_or_ignore() {
    let registry = crio_test::Registry::start().unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    for mode in ["bind", "ignore"] {
        let world = crio_test::pods::PodWorld::start_with_registry_and(
            &registry,
            &format!("image_volumes = \"{mode}\"\n"),
        )
        .unwrap();
        let mut client = world.daemon.client().await.unwrap();
        crio_test::cri::pull(&mut client, &images.volume.reference)
            .await
            .unwrap();
        let pod_id = run_pod(&mut client, pod_config("volumes", POD, POD)).await;
        let id = start(
            &mut client,
            &pod_id,
            container("vol", &images.volume.reference, &["sleep", "1000"]),
        )
        .await;
        let (_, mounted, _) = exec(&mut client, &id, "grep -c ' /data ' /proc/mounts").await;
        let (_, exists, _) = exec(&mut client, &id, "test -d /data && echo yes").await;
        match mode {
            // A directory of the container's own, mounted there.
            "bind" => {
                assert_eq!((mounted.as_str(), exists.as_str()), ("1", "yes"));
                assert_eq!(
                    out(&mut client, &id, "touch /data/ok && echo written").await,
                    "written"
                );
            }
            // Nothing: the image has no /data directory of its own.
            _ => assert_eq!((mounted.as_str(), exists.as_str()), ("0", "")),
        }
        remove_pod(&mut client, &pod_id).await;
    }
}

#[tokio::test]
async fn recursive_read_only_mounts_cover_submounts() {
    use crio_api::cri::StatusRequest;
    use nix::mount::{MsFlags, mount};
    let mut s = setup().await;
    // The runtime handler says it can (runc knows `rro`, the kernel is new).
    let handlers = s
        .client
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .runtime_handlers;
    assert!(
        handlers.iter().any(|h| h
            .features
            .as_ref()
            .is_some_and(|f| f.recursive_read_only_mounts)),
        "{handlers:?}"
    );
    // A host directory with a writable submount.
    let outer = s.world.daemon.path("outer");
    let inner = outer.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    mount(
        Some("tmpfs"),
        &inner,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let pod_id = run_pod(&mut s.client, pod_config("rro", POD, POD)).await;
    let mut config = container("reader", &s.images.busybox.reference, &["sleep", "1000"]);
    let read_only = |path: &str, recursive: bool| Mount {
        container_path: path.into(),
        host_path: outer.display().to_string(),
        readonly: true,
        recursive_read_only: recursive,
        ..Default::default()
    };
    config.mounts = vec![read_only("/ro", false), read_only("/rro", true)];
    let id = start(&mut s.client, &pod_id, config).await;
    // Plain read-only: the submount stays writable; recursive: it does not.
    assert_eq!(
        out(&mut s.client, &id, "touch /ro/inner/x && echo written").await,
        "written"
    );
    let (code, _, err) = exec(&mut s.client, &id, "touch /rro/inner/y").await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only"), "{err}");
    remove_pod(&mut s.client, &pod_id).await;
}

/// A container running `sleep` under RuntimeDefault seccomp, with the
/// default capabilities plus `add`, and `mounts`.
fn runtime_default(s: &Setup, name: &str, add: &[&str], mounts: Vec<Mount>) -> ContainerConfig {
    let mut config = container(name, &s.images.busybox.reference, &["sleep", "1000"]);
    config.mounts = mounts;
    config.linux = Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: add.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            }),
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
    });
    config
}

/// RuntimeDefault is an allow-list: a container without CAP_SYS_ADMIN
/// cannot make a namespace (clone with CLONE_NEWUSER refused, clone3
/// answered ENOSYS, unshare refused) nor set up io_uring; with
/// CAP_SYS_ADMIN it can make namespaces.
#[cfg(target_arch = "x86_64")]
#[tokio::test]
async fn runtime_default_seccomp_refuses_namespaces_without_cap_sys_admin() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = setup().await;
    let dir = s.world.daemon.path("probes");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, elf) in crio_test::syscall_probe::namespace_and_io_uring_probes() {
        std::fs::write(dir.join(name), elf).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let probes = vec![Mount {
        container_path: "/probes".into(),
        host_path: dir.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    let pod_id = run_pod(&mut s.client, pod_config("seccomp", POD, POD)).await;
    let plain = runtime_default(&s, "plain", &[], probes.clone());
    let plain = start(&mut s.client, &pod_id, plain).await;
    let admin = runtime_default(&s, "admin", &["SYS_ADMIN"], probes);
    let admin = start(&mut s.client, &pod_id, admin).await;
    let c = &mut s.client;
    // A probe exits with the errno of its call (0: it succeeded).
    let mut errno =
        async |id: &str, probe: &str| out(c, id, &format!("/probes/{probe}; echo $?")).await;

    assert_eq!(errno(&plain, "fork").await, "0", "a plain fork works");
    assert_eq!(errno(&plain, "clone-newuser").await, "1", "EPERM");
    assert_eq!(errno(&plain, "clone3-newuser").await, "38", "ENOSYS");
    assert_eq!(errno(&plain, "io-uring-setup").await, "1", "EPERM");
    assert_eq!(errno(&admin, "clone-newuser").await, "0");
    assert_eq!(errno(&admin, "clone3-newuser").await, "0");
    assert_eq!(errno(&admin, "io-uring-setup").await, "1", "EPERM");
    let (code, _, err) = exec(c, &plain, "unshare -U true").await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(out(c, &admin, "unshare -U true && echo made").await, "made");
    remove_pod(&mut s.client, &pod_id).await;
}

/// `seccomp_profile` in crio.conf is the RuntimeDefault profile; a file
/// that is not a profile stops the daemon at start-up, naming the file.
#[tokio::test]
async fn the_configured_seccomp_profile_is_runtime_default() {
    let profile = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
    let drop_in = "[crio.runtime]\nseccomp_profile = \"{dir}/only-mkdir.json\"\n";
    let mut s = setup_with_files(&[
        ("only-mkdir.json", profile),
        ("conf.d/50-seccomp.conf", drop_in),
    ])
    .await;
    let pod_id = run_pod(&mut s.client, pod_config("profile", POD, POD)).await;
    let config = runtime_default(&s, "confined", &[], Vec::new());
    let id = start(&mut s.client, &pod_id, config).await;
    let (code, _, err) = exec(&mut s.client, &id, "mkdir /tmp/d").await;
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    // The built-in profile would refuse this.
    assert_eq!(
        out(&mut s.client, &id, "unshare -U true && echo allowed").await,
        "allowed"
    );
    remove_pod(&mut s.client, &pod_id).await;

    let err = crio_test::TestDaemon::start_with_files(
        "",
        &[],
        &[
            (
                "only-mkdir.json",
                "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [",
            ),
            ("conf.d/50-seccomp.conf", drop_in),
        ],
    )
    .err()
    .expect("the daemon started with a broken seccomp profile");
    assert!(format!("{err:#}").contains("only-mkdir.json"), "{err:#}");
}
