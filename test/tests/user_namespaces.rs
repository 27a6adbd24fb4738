//! User namespaces (`userns_options`, Kubernetes `hostUsers: false`): a POD
//! mode pod's containers run mapped, their rootfs, volumes and pod files
//! idmapped (nothing chowned), the shapes the CRI rules out refused, the
//! runtime handler reporting the feature, and no mount left behind.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crio_api::client::CriClient;
use crio_api::cri::{
    IdMapping, LinuxContainerConfig, LinuxContainerSecurityContext, Mount, NamespaceMode,
    NamespaceOption, PodSandboxConfig, RunPodSandboxRequest, StatusRequest, UserNamespace,
};
use crio_test::containers::{
    container, create, remove_pod, run_pod, setup, setup_with_files, sh_out as exec, try_run_pod,
};
use crio_test::pods::pod_config;
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;
const BASE: u32 = 100_000;
const LENGTH: u32 = 65_536;

fn mapping(host_id: u32, container_id: u32) -> IdMapping {
    IdMapping {
        host_id,
        container_id,
        length: LENGTH,
    }
}

fn userns(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> UserNamespace {
    UserNamespace {
        mode: mode as i32,
        uids,
        gids,
    }
}

fn pod_mode() -> UserNamespace {
    userns(
        NamespaceMode::Pod,
        vec![mapping(BASE, 0)],
        vec![mapping(BASE, 0)],
    )
}

/// A pod with its own network and IPC namespaces and `user` as its user
/// namespace options.
fn userns_pod(name: &str, user: UserNamespace) -> PodSandboxConfig {
    let mut pod = pod_config(name, POD, POD);
    let ns = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("pod_config has namespace options");
    ns.userns_options = Some(user);
    pod
}

/// The image's VOLUME `/data` in container `id` is its root's, and its
/// root writes there.
async fn assert_data_is_roots(client: &mut CriClient, id: &str) {
    let script = "touch /data/made-here && stat -c %u /data /data/made-here";
    assert_eq!(exec(client, id, script).await, "0\n0");
}

/// No mount point names any of `ids`.
fn assert_no_mount_of(ids: &[&str]) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for gone in ids {
        assert!(
            !mounts.lines().any(|l| l.contains(gone)),
            "a mount of {gone} is left:\n{mounts}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_mode_pod_runs_mapped_on_idmapped_mounts() {
    let mut s = setup().await;
    let status = s
        .client
        .runtime
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let runc = status
        .runtime_handlers
        .iter()
        .find(|h| h.name == "runc")
        .expect("runc is listed");
    assert!(
        runc.features.as_ref().is_some_and(|f| f.user_namespaces),
        "runc reports user namespaces on this host: {status:?}"
    );

    // An emptyDir-style volume: a directory of the host's root, with a
    // file of the host's root in it.
    let volume = s.world.daemon.path("emptydir");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::set_permissions(&volume, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(volume.join("from-host"), "host").unwrap();

    let mut pod = userns_pod("mapped", pod_mode());
    pod.linux.as_mut().unwrap().sysctls = [(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "1000".to_string(),
    )]
    .into();
    let pod_id = run_pod(&mut s.client, pod).await;
    let mut config = container("app", &s.images.busybox.reference, &["sleep", "1000"]);
    config.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: volume.display().to_string(),
        ..Default::default()
    }];
    let id = create(&mut s.client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;
    let c = &mut s.client;

    let uid_map: Vec<String> = exec(c, &id, "cat /proc/self/uid_map")
        .await
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(uid_map, ["0", "100000", "65536"]);
    let gid_map = exec(c, &id, "cat /proc/self/gid_map").await;
    assert_eq!(gid_map.split_whitespace().collect::<Vec<_>>(), uid_map);
    assert_eq!(exec(c, &id, "id -u; id -g").await, "0\n0");
    // The pod's namespaces are its user namespace's: sysctls and hostname
    // are set there.
    assert_eq!(
        exec(
            c,
            &id,
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; hostname"
        )
        .await,
        "1000\nmapped"
    );

    // The mapped root writes its rootfs, the volume and the pod's files.
    exec(
        c,
        &id,
        "echo made > /made-here && echo made > /data/made-here && \
         echo '10.0.0.9 extra' >> /etc/hosts && echo extra > /dev/shm/made-here",
    )
    .await;
    // Through the idmapped mounts the host's root owns what it owns; what
    // no idmapped mount covers is nobody's.
    assert_eq!(
        exec(c, &id, "stat -c %u:%g /data/from-host /etc/hosts /bin/sh").await,
        "0:0\n0:0\n0:0"
    );
    assert_eq!(
        exec(c, &id, "stat -c %u:%g /proc/sys/kernel/ostype").await,
        "65534:65534"
    );

    // On the host, what it made is owned by the mapped IDs (base + 0): in
    // its writable layer, and seen through its idmapped volume; the
    // volume's own files keep their owners (nothing was chowned).
    let bundle = s.world.daemon.path("run/containers").join(&id);
    let upper = s
        .world
        .daemon
        .path("root/containers")
        .join(&id)
        .join("upper");
    for seen in [
        upper.join("made-here"),
        bundle.join("rootfs/made-here"),
        bundle.join("idmapped/mount-0/made-here"),
    ] {
        let m = std::fs::metadata(&seen).unwrap();
        assert_eq!((m.uid(), m.gid()), (BASE, BASE), "{}", seen.display());
    }
    let on_disk = std::fs::metadata(volume.join("made-here")).unwrap();
    assert_eq!((on_disk.uid(), on_disk.gid()), (0, 0));
    assert_eq!(std::fs::metadata(&volume).unwrap().uid(), 0);
    // The rootfs is reachable by path for the mapped group alone.
    let exposed = s.world.daemon.path("run/userns").join(&id);
    let m = std::fs::metadata(&exposed).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o710, 0, BASE));
    let m = std::fs::metadata(s.world.daemon.path("run/userns")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o711);
    let hosts = s.world.daemon.path("run/pods").join(&pod_id).join("hosts");
    assert!(
        std::fs::read_to_string(hosts)
            .unwrap()
            .contains("10.0.0.9 extra")
    );

    remove_pod(&mut s.client, &pod_id).await;
    assert_no_mount_of(&[&pod_id, &id]);
    let ns = s.world.daemon.path("ns/userns").join(&pod_id);
    assert!(!ns.exists(), "the user namespace is still pinned");
    assert!(volume.join("made-here").exists(), "the volume is untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shapes_the_cri_rules_out_are_refused_naming_the_field() {
    // A handler whose runtime answers no `features`.
    let mut s = setup_with_files(&[(
        "conf.d/50-mute.conf",
        "[crio.runtime.runtimes.mute]\nruntime_path = \"/bin/false\"\n",
    )])
    .await;
    let field = "config.linux.security_context.namespace_options.userns_options";
    let cases = [
        (
            userns(
                NamespaceMode::Pod,
                vec![mapping(BASE, 0), mapping(BASE + LENGTH, LENGTH)],
                vec![mapping(BASE, 0), mapping(BASE + LENGTH, LENGTH)],
            ),
            format!("{field}.uids"),
        ),
        (
            userns(
                NamespaceMode::Pod,
                vec![mapping(BASE, 1)],
                vec![mapping(BASE, 1)],
            ),
            format!("{field}.uids[0].container_id"),
        ),
        (
            userns(NamespaceMode::Container, vec![], vec![]),
            format!("{field}.mode"),
        ),
        (
            userns(NamespaceMode::Target, vec![], vec![]),
            format!("{field}.mode"),
        ),
        (
            userns(
                NamespaceMode::Pod,
                vec![mapping(BASE, 0)],
                vec![mapping(BASE * 3, 0)],
            ),
            format!("{field}.gids"),
        ),
    ];
    for (i, (shape, named)) in cases.into_iter().enumerate() {
        let err = try_run_pod(&mut s.client, userns_pod(&format!("bad-{i}"), shape))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(&named), "{named}: {err:?}");
    }

    // A handler that cannot do it here is refused, named.
    let err = s
        .client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(userns_pod("mute", pod_mode())),
            runtime_handler: "mute".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("\"mute\""), "{err:?}");

    // A container cannot leave its pod's user namespace.
    let pod_id = run_pod(&mut s.client, pod_config("plain", POD, POD)).await;
    let mut config = container("app", &s.images.busybox.reference, &["true"]);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                userns_options: Some(userns(NamespaceMode::Container, vec![], vec![])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = create(&mut s.client, &pod_id, config)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains(&format!("{field}.mode")), "{err:?}");
    remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_infra_process_and_image_volumes_are_in_the_user_namespace() {
    let registry = crio_test::Registry::start().unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    let world = crio_test::pods::PodWorld::start_with_registry_and(
        &registry,
        &format!("pause_image = \"{}\"\n", images.pause.reference),
    )
    .unwrap();
    let mut client = world.daemon.client().await.unwrap();
    crio_test::cri::pull(&mut client, &images.volume.reference)
        .await
        .unwrap();
    let mut pod = userns_pod("shared-pid", pod_mode());
    let ns = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .unwrap();
    ns.pid = POD;
    let pod_id = run_pod(&mut client, pod).await;
    // As the kubelet asks: the pod's PID namespace and user namespace.
    let mut config = container("app", &images.volume.reference, &["sleep", "1000"]);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: POD,
                userns_options: Some(pod_mode()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut client, id.clone()).await;
    // PID 1 is the pod's infra process, mapped as the container.
    let infra = exec(
        &mut client,
        &id,
        "cat /proc/1/cmdline; echo; cat /proc/1/uid_map",
    )
    .await;
    assert!(infra.lines().next().unwrap().contains("/pause"), "{infra}");
    assert_eq!(
        infra
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    // The image's VOLUME is the mapped root's.
    assert_data_is_roots(&mut client, &id).await;

    // A volume on a filesystem that cannot be idmapped (sysfs) is refused,
    // naming the mount, and leaves nothing mounted.
    let mut config = container("sysfs", &images.volume.reference, &["true"]);
    config.mounts = vec![Mount {
        container_path: "/host-sys".into(),
        host_path: "/sys/kernel".into(),
        readonly: true,
        ..Default::default()
    }];
    let err = create(&mut client, &pod_id, config)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("config.mounts[0]"), "{err:?}");

    remove_pod(&mut client, &pod_id).await;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = world.daemon.path("").display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&ours)
            && (l.contains("/containers/") || l.contains("/pods/") || l.contains("/userns"))),
        "mounts of ours are left:\n{mounts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_image_volumes_are_the_mapped_roots() {
    let registry = crio_test::Registry::start().unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    let world =
        crio_test::pods::PodWorld::start_with_registry_and(&registry, "image_volumes = \"bind\"\n")
            .unwrap();
    let mut client = world.daemon.client().await.unwrap();
    crio_test::cri::pull(&mut client, &images.volume.reference)
        .await
        .unwrap();
    let pod_id = run_pod(&mut client, userns_pod("bind-volume", pod_mode())).await;
    let config = container("app", &images.volume.reference, &["sleep", "1000"]);
    let id = create(&mut client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut client, id.clone()).await;
    assert_data_is_roots(&mut client, &id).await;
    remove_pod(&mut client, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_keeps_and_then_removes_a_user_namespaced_pod() {
    let mut s = setup().await;
    let pod_id = run_pod(&mut s.client, userns_pod("restart", pod_mode())).await;
    let config = container("app", &s.images.busybox.reference, &["sleep", "1000"]);
    let id = create(&mut s.client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;

    s.world
        .daemon
        .signal_and_wait(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    s.world.daemon.spawn().unwrap();
    let mut client = s.world.daemon.client().await.unwrap();
    let uid_map = exec(&mut client, &id, "cat /proc/self/uid_map").await;
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );

    remove_pod(&mut client, &pod_id).await;
    assert_no_mount_of(&[&pod_id, &id]);
}
