//! Who can reach the stores: a local user who is not root cannot reach an
//! image layer (with its setuid binaries), a container's writable layer or
//! its rootfs; containers running as a non-root user still work; a store
//! left with looser modes by an older version is fixed at start-up.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crio_api::cri::{Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext};
use crio_api::cri::{NamespaceMode, PodSandboxConfig};
use crio_test::containers::{Setup, container, create, run_pod, setup, start_container};
use crio_test::containers::{remove_pod, wait_exited};
use crio_test::pods::pod_config;
use nix::sys::signal::Signal;

const POD: i32 = NamespaceMode::Pod as i32;

/// Whether user and group 65534 (nobody), without supplementary groups,
/// can stat `path`.
fn nobody_can_stat(path: &Path) -> bool {
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg("stat")
        .arg(path)
        .output()
        .expect("run setpriv (util-linux)");
    out.status.success()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn only_entry(dir: &Path, len: usize) -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == len)
        .map(|e| e.path())
        .collect();
    assert_eq!(found.len(), 1, "entries of {}: {found:?}", dir.display());
    found.remove(0)
}

fn as_nobody(mut config: crio_api::cri::ContainerConfig) -> crio_api::cri::ContainerConfig {
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 65534 }),
            run_as_group: Some(Int64Value { value: 65534 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn local_users_cannot_reach_layers_or_rootfs_and_nonroot_containers_still_run() {
    let Setup {
        mut world,
        mut client,
        images,
        _registry,
    } = setup().await;
    // The test's directory (a 0700 temp dir) is opened up so that only the
    // store's own modes stand between a local user and the store.
    let base = world.daemon.path("");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(nobody_can_stat(&world.daemon.path("root")), "setpriv works");

    let pod: PodSandboxConfig = {
        let mut p = pod_config("perms", POD, POD);
        p.log_directory = world.daemon.path("podlogs").display().to_string();
        p
    };
    let pod_id = run_pod(&mut client, pod).await;
    // A non-root container reads the pod's files, lists its root and writes
    // to /tmp: what the 0700 entry points must not take away.
    let script = "cat /etc/resolv.conf /etc/hosts /etc/hostname >/dev/null && ls / >/dev/null \
                  && touch /tmp/x && id -u";
    let worker = create(
        &mut client,
        &pod_id,
        as_nobody(container(
            "worker",
            &images.busybox.reference,
            &["sh", "-c", script],
        )),
    )
    .await
    .unwrap();
    start_container(&mut client, worker.clone()).await;
    let status = wait_exited(&mut client, &worker).await;
    let log = std::fs::read_to_string(world.daemon.path("podlogs/worker.log")).unwrap();
    assert_eq!(status.exit_code, 0, "{log}");
    assert!(log.contains(" stdout F 65534"), "{log}");
    // A created container has its rootfs mounted.
    let idle = create(
        &mut client,
        &pod_id,
        container("idle", &images.busybox.reference, &["sleep", "600"]),
    )
    .await
    .unwrap();

    let layer = only_entry(&world.daemon.path("root/layers"), 64);
    let unreachable = [
        layer.join("diff"),
        layer.join("diff/bin/busybox"),
        only_entry(&world.daemon.path("root/layers/l"), 26),
        only_entry(&world.daemon.path("root/images"), 69),
        world
            .daemon
            .path("root/containers")
            .join(&idle)
            .join("upper"),
        world
            .daemon
            .path("run/containers")
            .join(&idle)
            .join("rootfs"),
        world
            .daemon
            .path("run/containers")
            .join(&idle)
            .join("rootfs/bin/busybox"),
        world
            .daemon
            .path("run/pods")
            .join(&pod_id)
            .join("resolv.conf"),
    ];
    for path in &unreachable {
        assert!(path.exists(), "{} exists (as root)", path.display());
        assert!(!nobody_can_stat(path), "nobody reaches {}", path.display());
    }
    let expected = [
        ("root", 0o711),
        ("run", 0o711),
        ("root/layers", 0o700),
        ("root/images", 0o700),
        ("root/containers", 0o700),
        ("run/containers", 0o700),
        ("run/pods", 0o700),
    ];
    for (dir, want) in expected {
        assert_eq!(mode(&world.daemon.path(dir)), want, "mode of {dir}");
    }

    // A store an older version left open is closed again at start-up.
    remove_pod(&mut client, &pod_id).await;
    world.daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    for (dir, _) in expected {
        let path = world.daemon.path(dir);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    world.daemon.spawn().unwrap();
    // The socket is bound before the stores open; an answer means they are.
    let mut client = world.daemon.client().await.unwrap();
    crio_test::containers::list_containers(&mut client).await;
    for (dir, want) in expected {
        assert_eq!(
            mode(&world.daemon.path(dir)),
            want,
            "mode of {dir} after restart"
        );
    }
    assert!(!nobody_can_stat(&layer.join("diff")));
}
