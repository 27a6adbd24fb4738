//! The daemon killed and replaced by another binary (an upgrade in place)
//! while containers run: they keep running and logging, one OOM-killed
//! while the daemon is down reports OOMKilled, and the new daemon execs,
//! stops and removes them through the shims the old one started.

use std::time::{Duration, Instant};

use crio_api::cri::{ExecSyncRequest, NamespaceMode};
use crio_test::containers::{container, create, remove_pod, run_pod, setup, status, wait_exited};
use crio_test::pods::pod_config;
use nix::sys::signal::Signal;

const POD: i32 = NamespaceMode::Pod as i32;

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_outlive_a_kill_and_an_upgraded_daemon_adopts_them() {
    let mut s = setup().await;
    let logs = s.world.daemon.path("logs");
    let mut pod = pod_config("upgrade", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut s.client, pod).await;
    let ticker = create(
        &mut s.client,
        &pod_id,
        container(
            "ticker",
            &s.images.busybox.reference,
            &["sh", "-c", "while :; do echo tick; sleep 0.05; done"],
        ),
    )
    .await
    .unwrap();
    let mut hog = container(
        "hog",
        &s.images.busybox.reference,
        &[
            "sh",
            "-c",
            "while [ ! -f /host/go ]; do sleep 0.05; done; dd if=/dev/zero of=/dev/null bs=96M count=1",
        ],
    );
    hog.mounts.push(crio_api::cri::Mount {
        container_path: "/host".into(),
        host_path: s.world.daemon.path("").display().to_string(),
        ..Default::default()
    });
    hog.linux = Some(crio_api::cri::LinuxContainerConfig {
        resources: Some(crio_api::cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        security_context: None,
    });
    let hog = create(&mut s.client, &pod_id, hog).await.unwrap();
    for id in [&ticker, &hog] {
        crio_test::containers::start_container(&mut s.client, id.clone()).await;
    }
    let log = logs.join("ticker.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(&log) == 0 {
        assert!(Instant::now() < deadline, "no log line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The daemon dies; the containers do not notice.
    s.world.daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    let shim_pids = crio_test::daemon::shims_of(&s.world.daemon.path(""));
    assert!(!shim_pids.is_empty(), "the shim died with the daemon");
    let before = lines(&log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(lines(&log) > before, "the log stopped with the daemon");
    std::fs::write(s.world.daemon.path("go"), "").unwrap();
    let oom_file = s.world.daemon.path(&format!("run/containers/{hog}/oom"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !oom_file.exists() {
        assert!(Instant::now() < deadline, "the hog was not OOM-killed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Another binary (an upgrade) starts on the same state.
    let next = tempfile::tempdir().unwrap();
    let binary = next.path().join("crio-next");
    std::fs::copy(crio_test::bins::bin("crio"), &binary).unwrap();
    // Installed with its shim beside it, as a package would.
    let shim = "containerd-shim-crio-v2";
    std::fs::copy(crio_test::bins::bin(shim), next.path().join(shim)).unwrap();
    s.world.daemon.set_binary(binary);
    s.world.daemon.spawn().unwrap();
    let mut client = s.world.daemon.client().await.unwrap();
    let listed = crio_test::containers::list_containers(&mut client).await;
    assert_eq!(listed.len(), 2);
    let t = status(&mut client, &ticker).await;
    assert_eq!(
        t.state,
        crio_api::cri::ContainerState::ContainerRunning as i32
    );
    let h = wait_exited(&mut client, &hog).await;
    assert_eq!((h.exit_code, h.reason.as_str()), (137, "OOMKilled"));
    let shims_now = crio_test::daemon::shims_of(&s.world.daemon.path(""));
    assert!(
        shim_pids.iter().all(|p| shims_now.contains(p)),
        "the new daemon started new shims instead of adopting the old ones"
    );
    let out = client
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: ticker.clone(),
            cmd: vec!["echo".into(), "adopted".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice()),
        (0, &b"adopted\n"[..])
    );
    crio_test::containers::stop(&mut client, &ticker).await;
    let t = wait_exited(&mut client, &ticker).await;
    assert!([137, 143].contains(&t.exit_code), "{t:?}");
    remove_pod(&mut client, &pod_id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shim_pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < deadline, "the shim outlived its pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_half_made_container_left_is_swept_at_start() {
    let mut d = crio_test::TestDaemon::start().unwrap();
    d.signal_and_wait(Signal::SIGKILL).unwrap();
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let rootfs = d.path(&format!("run/containers/{id}/rootfs"));
    let upper = d.path(&format!("root/containers/{id}/upper"));
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::write(upper.join("file"), "left over").unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &rootfs,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    d.spawn().unwrap();
    // Serving means start-up is over.
    let mut client = d.client().await.unwrap();
    client
        .runtime
        .version(crio_api::cri::VersionRequest::default())
        .await
        .unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&rootfs.display().to_string()),
        "the rootfs is still mounted"
    );
    assert!(
        !rootfs.parent().unwrap().exists(),
        "the bundle is still there"
    );
    assert!(
        !upper.parent().unwrap().exists(),
        "the writable layer is still there"
    );
}
