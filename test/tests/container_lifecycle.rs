//! Containers end to end: a pod, a container from a pulled image run by the
//! pod's shim through runc, its CRI log, its exit code; stop and remove
//! leave no process, mount or shim behind.

use std::path::Path;
use std::time::{Duration, Instant};

use crio_api::cri::{
    ContainerState, ImageSpec, NamespaceMode, RemoveContainerRequest, RemovePodSandboxRequest,
    StartContainerRequest, StopContainerRequest,
};
use crio_test::Registry;
use crio_test::containers::{Setup, container, create, run_pod, setup, status, wait_exited};
use crio_test::images::push_standard_images;
use crio_test::pods::{PodWorld, pod_config};
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;

fn shim_processes(dir: &Path) -> usize {
    crio_test::daemon::shims_of(dir).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_runs_logs_exits_and_leaves_nothing() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let mut pod = pod_config("app", POD, POD);
    pod.log_directory = world.daemon.path("podlogs").display().to_string();
    let pod_id = run_pod(&mut client, pod).await;

    // A container that writes to both streams, a partial last line, and exits 3.
    let script = "echo hello; echo oops >&2; printf partial; exit 3";
    let id = create(
        &mut client,
        &pod_id,
        container("worker", &images.busybox.reference, &["sh", "-c", script]),
    )
    .await
    .unwrap();
    assert_eq!(
        status(&mut client, &id).await.state,
        ContainerState::ContainerCreated as i32
    );
    crio_test::containers::start_container(&mut client, id.clone()).await;
    // ListContainers alone (kubelet's relist) sees the exit.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = crio_test::containers::list_containers(&mut client).await;
        if listed[0].state == ContainerState::ContainerExited as i32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exit never showed in the list"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = wait_exited(&mut client, &id).await;
    assert_eq!(s.exit_code, 3);
    assert_eq!(s.reason, "Error");
    assert!(s.started_at > 0 && s.finished_at >= s.started_at);
    let log = std::fs::read_to_string(world.daemon.path("podlogs/worker.log")).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    assert!(
        lines.iter().any(|l| l[1..] == ["stdout", "F", "hello"]),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l[1..] == ["stderr", "F", "oops"]),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l[1..] == ["stdout", "P", "partial"]),
        "{log}"
    );
    // The shim recorded the exit in the bundle as well.
    let exit =
        std::fs::read_to_string(world.daemon.path(&format!("run/containers/{id}/exit"))).unwrap();
    assert!(exit.starts_with("3 "), "{exit}");

    // A long-running one, stopped: SIGTERM ignored by sh's sleep, so SIGKILL after the timeout.
    let sleeper = create(
        &mut client,
        &pod_id,
        container("sleeper", &images.busybox.reference, &["sleep", "600"]),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut client, sleeper.clone()).await;
    assert_eq!(
        status(&mut client, &sleeper).await.state,
        ContainerState::ContainerRunning as i32
    );
    client
        .runtime
        .stop_container(StopContainerRequest {
            container_id: sleeper.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    let s = status(&mut client, &sleeper).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert!(s.exit_code == 143 || s.exit_code == 137, "{}", s.exit_code);
    // Stop again is fine.
    client
        .runtime
        .stop_container(StopContainerRequest {
            container_id: sleeper.clone(),
            timeout: 1,
        })
        .await
        .unwrap();

    let listed = crio_test::containers::list_containers(&mut client).await;
    assert_eq!(listed.len(), 2);
    assert!(
        shim_processes(&world.daemon.path("")) >= 1,
        "no shim running for the pod"
    );

    // Errors name what is wrong.
    let err = create(
        &mut client,
        &pod_id,
        container("x", "test/absent:1", &["true"]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = create(
        &mut client,
        "nosuchpod",
        container("x", &images.busybox.reference, &["true"]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    client
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    client
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap();
    let listed = crio_test::containers::list_containers(&mut client).await;
    assert!(listed.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while shim_processes(&world.daemon.path("")) > 0 {
        assert!(Instant::now() < deadline, "the pod's shim did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&world.daemon.path("run/containers").display().to_string()),
        "rootfs left mounted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crioctl_container_verbs() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let world = PodWorld::start_with_registry(&registry).unwrap();
    let d = &world.daemon;
    let run = |args: &[&str]| {
        let out = d.crioctl(args).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["pull", &images.busybox.reference]);
    let pod = d.path("pod.yaml");
    std::fs::write(
        &pod,
        format!(
            "metadata:\n  name: cli\n  namespace: default\n  uid: cli-uid\nlog_directory: {}\nlinux:\n  cgroup_parent: {}\n  security_context:\n    namespace_options:\n      pid: 1\n",
            d.path("logs-cli").display(),
            crio_test::pods::test_cgroup_parent()
        ),
    )
    .unwrap();
    let ctr = d.path("container.json");
    std::fs::write(
        &ctr,
        format!(
            r#"{{"metadata": {{"name": "talker"}}, "image": {{"image": "{}"}}, "command": ["sh", "-c", "echo from-crioctl; sleep 600"], "log_path": "talker.log"}}"#,
            images.busybox.reference
        ),
    )
    .unwrap();
    run(&["run", ctr.to_str().unwrap(), pod.to_str().unwrap()]);
    let ps = run(&["ps"]);
    assert!(
        ps.contains("CONTAINER") && ps.contains("talker") && ps.contains("Running"),
        "{ps}"
    );
    let id = run(&["ps", "-q"]).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run(&["logs", &id]).contains("from-crioctl") {
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(50));
    }
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspect", &id])).unwrap();
    assert_eq!(inspect["status"]["metadata"]["name"], "talker");
    assert!(
        !d.crioctl(&["rm", &id]).unwrap().status.success(),
        "rm of a running container without -f"
    );
    run(&["stop", "-t", "0", &id]);
    assert!(run(&["ps", "-a"]).contains("Exited"));
    assert_eq!(run(&["ps", "-q"]).trim(), "");
    run(&["rm", &id]);
    run(&["rmp", "--all", "--force"]);
    assert_eq!(run(&["ps", "-a", "-q"]).trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_pod_share_shm_and_see_the_pod_files_and_images_in_use_stay() {
    use crio_api::cri::{DnsConfig, RemoveImageRequest};
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let mut pod = pod_config("sharing", POD, POD);
    pod.hostname = "shared-host".into();
    pod.log_directory = world.daemon.path("podlogs").display().to_string();
    pod.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["svc.local".into()],
        options: vec![],
    });
    let pod_id = run_pod(&mut client, pod).await;
    let writer = create(
        &mut client,
        &pod_id,
        container(
            "writer",
            &images.busybox.reference,
            &["sh", "-c", "echo from-writer > /dev/shm/note; sleep 600"],
        ),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut client, writer.clone()).await;
    let script = "while [ ! -f /dev/shm/note ]; do sleep 0.05; done; cat /dev/shm/note; hostname; cat /etc/resolv.conf; grep shared-host /etc/hosts | wc -l";
    let reader = create(
        &mut client,
        &pod_id,
        container("reader", &images.busybox.reference, &["sh", "-c", script]),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut client, reader.clone()).await;
    let s = wait_exited(&mut client, &reader).await;
    assert_eq!(s.exit_code, 0);
    assert_eq!(s.reason, "Completed");
    let log = std::fs::read_to_string(world.daemon.path("podlogs/reader.log")).unwrap();
    let out: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        out,
        [
            "from-writer",
            "shared-host",
            "search svc.local",
            "nameserver 10.96.0.10",
            "1"
        ],
        "{log}"
    );

    // The image is in use: RemoveImage refuses to delete it.
    let err = client
        .image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: images.busybox.config_digest.clone(),
                ..ImageSpec::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("in use"), "{}", err.message());

    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .unwrap();
    client
        .image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: images.busybox.config_digest.clone(),
                ..ImageSpec::default()
            }),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_that_exits_while_the_daemon_is_down_keeps_its_exit_code() {
    use nix::sys::signal::Signal;
    let Setup {
        mut world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let pod_id = run_pod(&mut client, pod_config("survive", POD, POD)).await;
    let marker = world.daemon.path("go");
    let script = "while [ ! -f /host/go ]; do sleep 0.05; done; exit 7";
    let mut config = container("late", &images.busybox.reference, &["sh", "-c", script]);
    config.mounts.push(crio_api::cri::Mount {
        container_path: "/host".into(),
        host_path: world.daemon.path("").display().to_string(),
        ..Default::default()
    });
    let running = create(&mut client, &pod_id, config).await.unwrap();
    let sleeper = create(
        &mut client,
        &pod_id,
        container("steady", &images.busybox.reference, &["sleep", "600"]),
    )
    .await
    .unwrap();
    for id in [&running, &sleeper] {
        crio_test::containers::start_container(&mut client, id.clone()).await;
    }
    drop(client);

    // The daemon dies; one container exits while it is down, one keeps running.
    world.daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    std::fs::write(&marker, "").unwrap();
    let exit_file = world.daemon.path(&format!("run/containers/{running}/exit"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exit_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the shim recorded no exit while the daemon was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    world.daemon.spawn().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let s = status(&mut client, &running).await;
    assert_eq!(
        (s.state, s.exit_code, s.reason.as_str()),
        (ContainerState::ContainerExited as i32, 7, "Error")
    );
    assert_eq!(
        status(&mut client, &sleeper).await.state,
        ContainerState::ContainerRunning as i32
    );
    client
        .runtime
        .stop_container(StopContainerRequest {
            container_id: sleeper.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        status(&mut client, &sleeper).await.state,
        ContainerState::ContainerExited as i32
    );
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let Setup {
        world: _world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let pod_id = run_pod(&mut client, pod_config("hungry", POD, POD)).await;
    let config = crio_test::containers::memory_hog("hungry", &images.busybox.reference);
    let id = create(&mut client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut client, id.clone()).await;
    let s = wait_exited(&mut client, &id).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "OOMKilled"));
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_returns_output_and_exit_code_and_times_out() {
    use crio_api::cri::ExecSyncRequest;
    let Setup {
        world: _world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let pod_id = run_pod(&mut client, pod_config("execs", POD, POD)).await;
    let id = create(
        &mut client,
        &pod_id,
        container("target", &images.busybox.reference, &["sleep", "600"]),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut client, id.clone()).await;
    let exec = |cmd: &[&str], timeout: i64| ExecSyncRequest {
        container_id: id.clone(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    };
    let r = client
        .runtime
        .exec_sync(exec(
            &["sh", "-c", "echo out; echo err >&2; hostname; exit 4"],
            10,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.exit_code, 4);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "out\nexecs\n");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "err\n");
    let r = client
        .runtime
        .exec_sync(exec(&["true"], 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.exit_code, 0);
    let err = client
        .runtime
        .exec_sync(exec(&["sleep", "30"], 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // The timed-out process is gone: the container has only its own process left.
    let r = client
        .runtime
        .exec_sync(exec(&["sh", "-c", "ps -o comm | grep -c sleep"], 10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let err = client.runtime.exec_sync(exec(&[], 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shim_leaves_its_containers_stoppable_and_the_pod_removable() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let pod_id = run_pod(&mut client, pod_config("orphan", POD, POD)).await;
    let id = create(
        &mut client,
        &pod_id,
        container("lonely", &images.busybox.reference, &["sleep", "4242"]),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut client, id.clone()).await;
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x004242\x00")
            })
            .count()
    };
    assert_eq!(sleeping(), 1);
    for pid in crio_test::daemon::processes_mentioning(
        &world.daemon.path("run/events.sock").display().to_string(),
    ) {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.contains("containerd-shim-crio-v2") {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its process lives on: a dead shim is no evidence of an exit.
    let s = status(&mut client, &id).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    assert_eq!(sleeping(), 1);
    client
        .runtime
        .stop_pod_sandbox(crio_api::cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap();
    // Stopped by the daemon itself: exited, the lost monitor named.
    let s = status(&mut client, &id).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!(s.reason, "ShimLost", "{s:?}");
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .unwrap();
    assert_eq!(
        sleeping(),
        0,
        "the orphaned container process survived removal"
    );
    assert!(
        crio_test::containers::list_containers(&mut client)
            .await
            .is_empty()
    );
}

/// `ps -o pid,args` in a container, and its PID 1 line.
async fn processes(client: &mut crio_api::client::CriClient, id: &str) -> (String, Option<String>) {
    let r = client
        .runtime
        .exec_sync(crio_api::cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["ps".into(), "-o".into(), "pid,args".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let ps = String::from_utf8_lossy(&r.stdout).into_owned();
    let pid1 = ps
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .map(str::to_string);
    (ps, pid1)
}

/// A pod config whose containers share one PID namespace.
fn shared_pid_pod(name: &str) -> crio_api::cri::PodSandboxConfig {
    let mut config = pod_config(name, POD, POD);
    let sc = config.linux.as_mut().unwrap().security_context.as_mut();
    sc.unwrap().namespace_options.as_mut().unwrap().pid = POD;
    config
}

/// IDs and init pids of the daemon's runc containers.
fn runc_containers(dir: &Path) -> Vec<(String, u32)> {
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(dir.join("runc"))
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "running")
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["pid"].as_u64().unwrap_or_default() as u32,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_pid_namespace_gets_an_infra_process_and_only_then() {
    use crio_api::cri::ListImagesRequest;
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let world = PodWorld::start_with_registry_and(
        &registry,
        &format!("pause_image = \"{}\"\n", images.pause.reference),
    )
    .unwrap();
    let mut client = world.daemon.client().await.unwrap();
    crio_test::cri::pull(&mut client, &images.busybox.reference)
        .await
        .unwrap();
    let dir = world.daemon.path("");

    // A pod of its own PID namespaces: no infra process.
    let own = run_pod(&mut client, pod_config("own", POD, POD)).await;
    assert!(runc_containers(&dir).is_empty());

    // A pod sharing one: the pause image is pulled (and pinned), and its
    // process holds the namespace.
    let shared = run_pod(&mut client, shared_pid_pod("shared")).await;
    let infra = runc_containers(&dir);
    assert_eq!(infra.len(), 1, "{infra:?}");
    let (infra_id, infra_pid) = infra[0].clone();
    // `runc start` returns once the init is told to go: it execs the pause
    // binary a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let cmdline = std::fs::read(format!("/proc/{infra_pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        if cmdline.contains("/pause") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{cmdline:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let listed = client
        .image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    let pause = listed
        .iter()
        .find(|i| i.repo_tags.contains(&images.pause.reference))
        .expect("the pause image was pulled");
    assert!(pause.pinned);

    let sharing = |name: &str, command: &[&str]| {
        let mut c = container(name, &images.busybox.reference, command);
        c.linux = Some(crio_api::cri::LinuxContainerConfig {
            security_context: Some(crio_api::cri::LinuxContainerSecurityContext {
                namespace_options: Some(crio_api::cri::NamespaceOption {
                    pid: POD,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let mut ids = Vec::new();
    for (name, secs) in [("a", "600"), ("b", "601")] {
        let id = create(&mut client, &shared, sharing(name, &["sleep", secs]))
            .await
            .unwrap();
        crio_test::containers::start_container(&mut client, id.clone()).await;
        ids.push(id);
    }
    let (ps, pid1) = processes(&mut client, &ids[1]).await;
    assert!(
        pid1.is_some_and(|l| l.contains("/pause")),
        "PID 1 is not the infra process:\n{ps}"
    );
    assert!(ps.contains("sleep 600") && ps.contains("sleep 601"), "{ps}");
    // The infra container is not one of the pod's listed containers.
    let listed = crio_test::containers::list_containers(&mut client).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.id != infra_id));

    // Stopping the pod ends every process, the infra one last; removing
    // it leaves no runtime container.
    client
        .runtime
        .stop_pod_sandbox(crio_api::cri::StopPodSandboxRequest {
            pod_sandbox_id: shared.clone(),
        })
        .await
        .unwrap();
    assert!(runc_containers(&dir).is_empty());
    assert!(!Path::new(&format!("/proc/{infra_pid}")).exists());
    for pod in [&shared, &own] {
        crio_test::containers::remove_pod(&mut client, pod).await;
    }
    let left = std::process::Command::new("runc")
        .arg("--root")
        .arg(dir.join("runc"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_retries_get_the_same_container_and_a_clash_is_refused() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let pod_id = run_pod(&mut client, pod_config("retries", POD, POD)).await;
    let config = container("same", &images.busybox.reference, &["sleep", "600"]);
    // Kubelet-style retries, some while the first is still under way.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (mut c, pod, config) = (client.clone(), pod_id.clone(), config.clone());
            tokio::spawn(async move { create(&mut c, &pod, config).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        create(&mut client, &pod_id, config.clone()).await.unwrap(),
        ids[0]
    );
    let listed = crio_test::containers::list_containers(&mut client).await;
    assert_eq!(listed.len(), 1);
    // The same name with another request is refused, naming the holder.
    let mut other = config.clone();
    other.command = vec!["sleep".into(), "700".into()];
    let err = create(&mut client, &pod_id, other.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains(&ids[0]) && err.message().contains("k8s_same_retries"),
        "{}",
        err.message()
    );
    // Once removed, the name is free again.
    client
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: ids[0].clone(),
        })
        .await
        .unwrap();
    let again = create(&mut client, &pod_id, other).await.unwrap();
    assert_ne!(again, ids[0]);

    // Concurrent first creates in a fresh pod share one shim.
    let fresh = run_pod(&mut client, pod_config("fresh", POD, POD)).await;
    let calls: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let (mut c, pod) = (client.clone(), fresh.clone());
            let config = container(name, &images.busybox.reference, &["sleep", "600"]);
            tokio::spawn(async move { create(&mut c, &pod, config).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(shim_processes(&world.daemon.path("")), 2);
    for pod in [&pod_id, &fresh] {
        crio_test::containers::remove_pod(&mut client, pod).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_pid_namespace_is_the_target_containers() {
    use crio_api::cri::{LinuxContainerConfig, LinuxContainerSecurityContext};
    let Setup {
        world: _world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let pod_id = run_pod(&mut client, pod_config("debug", POD, POD)).await;
    let start = async |c: &mut crio_api::client::CriClient, config| {
        let id = create(c, &pod_id, config).await?;
        c.runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok::<_, tonic::Status>(id)
    };
    let target = start(
        &mut client,
        container("app", &images.busybox.reference, &["sleep", "600"]),
    )
    .await
    .unwrap();
    // A debug container in the target's PID namespace (kubectl debug --target).
    let debugger = |target_id: &str| {
        let mut c = container("debugger", &images.busybox.reference, &["sleep", "601"]);
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(crio_api::cri::NamespaceOption {
                    pid: NamespaceMode::Target as i32,
                    target_id: target_id.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let err = create(&mut client, &pod_id, debugger("no-such-container"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.message().contains("target_id"), "{err}");
    let debug = start(&mut client, debugger(&target)).await.unwrap();
    let (ps, pid1) = processes(&mut client, &debug).await;
    assert!(
        pid1.is_some_and(|l| l.contains("sleep 600")),
        "PID 1 is not the target's process:\n{ps}"
    );
    assert!(ps.contains("sleep 601"), "{ps}");
    crio_test::containers::remove_pod(&mut client, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pause_image_is_pulled_with_pause_image_auth_file() {
    let registry = Registry::start_with_auth("alice", "s3cret").unwrap();
    let images = push_standard_images(&registry).unwrap();
    let auth = tempfile::tempdir().unwrap();
    let auth_file = auth.path().join("pause-auth.json");
    std::fs::write(
        &auth_file,
        format!(
            "{{\"auths\": {{\"{}\": {{\"auth\": \"YWxpY2U6czNjcmV0\"}}}}}}",
            registry.host()
        ),
    )
    .unwrap();
    let pause = format!("pause_image = \"{}\"\n", images.pause.reference);
    for with_file in [false, true] {
        let toml = if with_file {
            format!(
                "{pause}pause_image_auth_file = \"{}\"\n",
                auth_file.display()
            )
        } else {
            pause.clone()
        };
        let world = PodWorld::start_with_registry_and(&registry, &toml).unwrap();
        let mut client = world.daemon.client().await.unwrap();
        let result = client
            .runtime
            .run_pod_sandbox(crio_api::cri::RunPodSandboxRequest {
                config: Some(shared_pid_pod("paused")),
                runtime_handler: String::new(),
            })
            .await;
        if with_file {
            let id = result.unwrap().into_inner().pod_sandbox_id;
            assert_eq!(runc_containers(&world.daemon.path("")).len(), 1);
            crio_test::containers::remove_pod(&mut client, &id).await;
        } else {
            // Without credentials the pull is refused, naming the pause
            // image, and no half pod stays.
            let err = result.unwrap_err();
            assert_eq!(err.code(), Code::Unauthenticated, "{err}");
            assert!(err.message().contains("pause_image"), "{err}");
            let pods = client
                .runtime
                .list_pod_sandbox(crio_api::cri::ListPodSandboxRequest::default())
                .await
                .unwrap()
                .into_inner()
                .items;
            assert!(pods.is_empty(), "{pods:?}");
        }
    }
}
