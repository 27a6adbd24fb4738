//! What kubelet asks of running containers beyond their life cycle, through
//! the daemon: container and pod stats, UpdateContainerResources,
//! ReopenContainerLog after rotation, and terminal containers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crio_api::cri::{
    ContainerStatsFilter, ContainerStatsRequest, LinuxContainerResources,
    ListContainerStatsRequest, NamespaceMode, PodSandboxStatsRequest, ReopenContainerLogRequest,
    UpdateContainerResourcesRequest,
};
use crio_test::containers::{create, run_pod, setup, status, wait_exited};
use crio_test::pods::{pod_config, test_cgroup_parent};
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default().to_string())
        .collect()
}

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The memory cgroup directory of container `id` (cgroupfs driver, v1).
fn memory_cgroup(id: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup/memory")
        .join(test_cgroup_parent().trim_start_matches('/'))
        .join(format!("crio-{id}"))
}

#[tokio::test]
async fn stats_update_and_log_reopen_of_a_running_container() {
    let mut s = setup().await;
    let logs = s.world.daemon.path("logs");
    let mut pod = pod_config("stats", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut s.client, pod).await;
    let config = crio_test::containers::container(
        "ticker",
        &s.images.busybox.reference,
        &[
            "sh",
            "-c",
            "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let id = create(&mut s.client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;

    let stats = |client: &mut crio_api::client::CriClient| {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            client
                .runtime
                .container_stats(ContainerStatsRequest { container_id: id })
                .await
                .unwrap()
                .into_inner()
                .stats
                .unwrap()
        }
    };
    let first = stats(&mut s.client).await;
    assert_eq!(first.attributes.as_ref().unwrap().id, id);
    let memory = first.memory.unwrap();
    assert!(memory.working_set_bytes.unwrap().value > 0);
    assert!(memory.usage_bytes.unwrap().value > 0);
    let layer = first.writable_layer.unwrap();
    assert!(layer.inodes_used.unwrap().value >= 1);
    assert!(layer.fs_id.unwrap().mountpoint.ends_with("upper"));
    assert!(
        first
            .cpu
            .as_ref()
            .unwrap()
            .usage_core_nano_seconds
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = stats(&mut s.client).await;
    assert!(
        second.cpu.unwrap().usage_nano_cores.is_some(),
        "a second sample gives a CPU rate"
    );

    let listed = s
        .client
        .runtime
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1);
    let none = s
        .client
        .runtime
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                id: "nonexistent".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert!(none.is_empty());

    let pod_stats = s
        .client
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = pod_stats.linux.unwrap();
    assert_eq!(linux.containers.len(), 1);
    assert!(linux.process.unwrap().process_count.unwrap().value >= 1);
    assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
    let err = s
        .client
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: "nonexistent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // UpdateContainerResources: the new limit reaches the cgroup and the
    // status.
    let limit = 96 << 20;
    s.client
        .runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: limit,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let cg = std::fs::read_to_string(memory_cgroup(&id).join("memory.limit_in_bytes")).unwrap();
    assert_eq!(cg.trim(), limit.to_string());
    let st = status(&mut s.client, &id).await;
    let resources = st.resources.unwrap().linux.unwrap();
    assert_eq!(
        (resources.memory_limit_in_bytes, resources.cpu_shares),
        (limit, 512)
    );
    let err = s
        .client
        .runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // ReopenContainerLog after the kubelet moved the file away.
    let log = logs.join("ticker.log");
    eventually("log lines", async || {
        (!log_lines(&log).is_empty()).then_some(())
    })
    .await;
    let rotated = logs.join("ticker.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    s.client
        .runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let fresh = eventually("lines in the reopened log", async || {
        let l = log_lines(&log);
        (l.len() >= 2).then_some(l)
    })
    .await;
    assert!(fresh.iter().all(|l| l.starts_with("tick ")), "{fresh:?}");
    let old = log_lines(&rotated);
    let last_old: u64 = old.last().unwrap()[5..].parse().unwrap();
    let first_new: u64 = fresh[0][5..].parse().unwrap();
    assert_eq!(first_new, last_old + 1, "no line lost or repeated");

    crio_test::containers::stop(&mut s.client, &id).await;
    let err = s
        .client
        .runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    crio_test::containers::remove_pod(&mut s.client, &pod_id).await;
}

#[tokio::test]
async fn a_terminal_container_logs_what_it_writes_to_its_terminal() {
    let mut s = setup().await;
    let logs = s.world.daemon.path("logs");
    let mut pod = pod_config("tty", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut s.client, pod).await;
    let mut config = crio_test::containers::container(
        "term",
        &s.images.busybox.reference,
        &["sh", "-c", "tty; exit 4"],
    );
    config.tty = true;
    let id = create(&mut s.client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;
    let st = wait_exited(&mut s.client, &id).await;
    assert_eq!(st.exit_code, 4);
    let lines = eventually("the log line", async || {
        let l = log_lines(&logs.join("term.log"));
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(lines, vec!["/dev/pts/0"]);
    crio_test::containers::remove_pod(&mut s.client, &pod_id).await;
}

fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "crioctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn crioctl_stats_update_exec_and_shim_debugging() {
    let mut s = setup().await;
    let pod_id = run_pod(&mut s.client, pod_config("ctl", POD, POD)).await;
    let config = crio_test::containers::container(
        "sleeper",
        &s.images.busybox.reference,
        &["sleep", "1000"],
    );
    let id = create(&mut s.client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;
    let d = &s.world.daemon;
    let short = &id[..13];

    // Verbose status: the init's pid and the OCI spec.
    let verbose = s
        .client
        .runtime
        .container_status(crio_api::cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    let pid = info["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"sleep\x001000"), "{cmdline:?}");
    assert_eq!(info["runtimeSpec"]["process"]["args"][0], "sleep");

    let table = stdout_of(d.crioctl(&["stats"]).unwrap());
    let row = table.lines().find(|l| l.starts_with(short)).unwrap();
    assert!(row.contains("sleeper"), "{table}");
    let json = stdout_of(d.crioctl(&["stats", "-o", "json", &id]).unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["stats"][0]["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    let pods = stdout_of(d.crioctl(&["statsp"]).unwrap());
    assert!(pods.contains(&pod_id[..13]), "{pods}");

    stdout_of(d.crioctl(&["update", "--memory", "50331648", &id]).unwrap());
    let cg = std::fs::read_to_string(memory_cgroup(&id).join("memory.limit_in_bytes")).unwrap();
    assert_eq!(cg.trim(), "50331648");

    let out = d
        .crioctl(&["exec", "-s", &id, "sh", "-c", "echo from exec; exit 3"])
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from exec\n");

    let root = d.path("root").display().to_string();
    let run = d.path("run").display().to_string();
    let shim = |args: &[&str]| {
        let mut all = vec!["shim", "--root", &root, "--runroot", &run];
        all.extend_from_slice(args);
        d.crioctl(&all).unwrap()
    };
    let ls = stdout_of(shim(&["ls"]));
    let line = ls.lines().find(|l| l.starts_with(&pod_id)).unwrap();
    let shim_pid: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{shim_pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("containerd-shim-crio-v2"));
    // The shim lives in a leaf of its own below the pod's cgroup, not in
    // the daemon's, beside the containers' cgroups.
    let leaf = format!("{}/crio-shim-{pod_id}", test_cgroup_parent());
    let cgroups = std::fs::read_to_string(format!("/proc/{shim_pid}/cgroup")).unwrap();
    let memory = cgroups.lines().find(|l| l.contains(":memory:")).unwrap();
    assert!(memory.ends_with(&format!(":{leaf}")), "{cgroups}");
    let leaf_dir = Path::new("/sys/fs/cgroup/memory").join(leaf.trim_start_matches('/'));
    assert!(memory_cgroup(&id).starts_with(leaf_dir.parent().unwrap()));
    let ps = stdout_of(shim(&["ps", &pod_id]));
    let task = ps.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(task.contains("RUNNING"), "{ps}");
    stdout_of(shim(&["kill", &pod_id, &id, "-s", "SIGKILL"]));
    let st = wait_exited(&mut s.client, &id).await;
    assert_eq!(st.exit_code, 137);
    let ps = stdout_of(shim(&["ps", &pod_id]));
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED")),
        "{ps}"
    );
    let err = shim(&["ps", "no-such-pod"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("has no shim"));
    crio_test::containers::remove_pod(&mut s.client, &pod_id).await;
    // Removed with the pod, once the shim is gone.
    assert!(!leaf_dir.exists(), "{} left", leaf_dir.display());
}

#[tokio::test]
async fn crioctl_logs_tail_follow_since_and_the_previous_attempt() {
    let mut s = setup().await;
    let logs = s.world.daemon.path("logs");
    let mut pod = pod_config("logs", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut s.client, pod).await;
    let attempt = |n: u32, script: &str| {
        let mut c = crio_test::containers::container(
            "talker",
            &s.images.busybox.reference,
            &["sh", "-c", script],
        );
        c.metadata.as_mut().unwrap().attempt = n;
        c.log_path = format!("talker/{n}.log");
        c
    };
    let mut ids = Vec::new();
    for (n, script) in [
        (0, "echo out-zero; echo err-zero >&2"),
        (1, "echo early; sleep 2; echo late; sleep 1"),
    ] {
        let id = create(&mut s.client, &pod_id, attempt(n, script))
            .await
            .unwrap();
        crio_test::containers::start_container(&mut s.client, id.clone()).await;
        if n == 0 {
            wait_exited(&mut s.client, &id).await;
        }
        ids.push(id);
    }
    let d = &s.world.daemon;
    let id = ids[1].as_str();
    // -f follows until the container exits.
    assert_eq!(
        stdout_of(d.crioctl(&["logs", "-f", id]).unwrap()),
        "early\nlate\n"
    );
    assert_eq!(
        stdout_of(d.crioctl(&["logs", "--tail", "1", id]).unwrap()),
        "late\n"
    );
    // --since the time of the late line, as logged.
    let text = std::fs::read_to_string(logs.join("talker/1.log")).unwrap();
    let late_time = text
        .lines()
        .find(|l| l.ends_with(" late"))
        .and_then(|l| l.split(' ').next())
        .unwrap();
    assert_eq!(
        stdout_of(d.crioctl(&["logs", "--since", late_time, id]).unwrap()),
        "late\n"
    );
    assert_eq!(
        stdout_of(d.crioctl(&["logs", "--since", "1h", "-t", id]).unwrap())
            .lines()
            .count(),
        2
    );
    assert!(
        !d.crioctl(&["logs", "--since", "soon", id])
            .unwrap()
            .status
            .success()
    );
    // -p: attempt 0's log, each stream to its own.
    let out = d.crioctl(&["logs", "-p", id]).unwrap();
    assert_eq!(stdout_of(out.clone()), "out-zero\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err-zero\n");
    let out = d.crioctl(&["logs", "-p", &ids[0]]).unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("attempt 0"),
        "{out:?}"
    );
    crio_test::containers::remove_pod(&mut s.client, &pod_id).await;
}

/// The first usage figure of the container filesystem and of the writable
/// layer of `id`, each call allowed 5 s (a walk of the files takes far less
/// here, so only an answer that waits for something else runs out).
async fn usage_figures(
    client: &mut crio_api::client::CriClient,
    id: &str,
) -> (
    crio_api::cri::FilesystemUsage,
    crio_api::cri::FilesystemUsage,
) {
    let limit = Duration::from_secs(5);
    let started = Instant::now();
    let fs_info = tokio::time::timeout(
        limit,
        client
            .image
            .image_fs_info(crio_api::cri::ImageFsInfoRequest {}),
    )
    .await
    .expect("ImageFsInfo answers within 5 s")
    .unwrap()
    .into_inner();
    let fs_info_took = started.elapsed();
    let started = Instant::now();
    let stats = tokio::time::timeout(
        limit,
        client.runtime.container_stats(ContainerStatsRequest {
            container_id: id.into(),
        }),
    )
    .await
    .expect("ContainerStats answers within 5 s")
    .unwrap()
    .into_inner();
    eprintln!(
        "ImageFsInfo took {fs_info_took:?}, ContainerStats {:?}",
        started.elapsed()
    );
    (
        fs_info.container_filesystems[0].clone(),
        stats.stats.unwrap().writable_layer.unwrap(),
    )
}

/// A container that fills its writable layer with 200,000 files: ImageFsInfo
/// and ContainerStats answer from figures measured in the background (two
/// calls in a row report the same measurement, timestamped when it was
/// taken, not when it was asked for), and the figures catch up with the
/// files.
#[tokio::test(flavor = "multi_thread")]
async fn usage_of_a_container_with_many_files_is_measured_in_the_background() {
    const FILES: u64 = 200_000;
    let mut s = setup().await;
    let pod_id = run_pod(&mut s.client, pod_config("many-files", POD, POD)).await;
    let script = format!(
        "mkdir /many && cd /many && seq {FILES} | xargs touch && touch /done && exec sleep 600"
    );
    let config = crio_test::containers::container(
        "many",
        &s.images.busybox.reference,
        &["sh", "-c", &script],
    );
    let id = create(&mut s.client, &pod_id, config).await.unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;
    let done = s
        .world
        .daemon
        .path("root/containers")
        .join(&id)
        .join("upper/done");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "the container made no {FILES} files"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut fs_stamps = Vec::new();
    for _ in 0..3 {
        let (fs, layer) = usage_figures(&mut s.client, &id).await;
        assert!(fs.timestamp <= crio_api::time::now_nanos());
        assert!(layer.timestamp <= crio_api::time::now_nanos());
        assert!(layer.fs_id.unwrap().mountpoint.ends_with("upper"));
        fs_stamps.push(fs.timestamp);
    }
    // Walks are at least 10 s apart: of three calls within that time, two
    // in a row share a measurement.
    assert!(
        fs_stamps.windows(2).any(|w| w[0] == w[1]),
        "every ImageFsInfo measured anew: {fs_stamps:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (fs, layer) = usage_figures(&mut s.client, &id).await;
        let (fs_inodes, layer_inodes) = (
            fs.inodes_used.unwrap().value,
            layer.inodes_used.unwrap().value,
        );
        if fs_inodes > FILES && layer_inodes > FILES {
            assert!(fs_inodes >= layer_inodes);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the figures never counted the files: {fs_inodes} {layer_inodes}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    crio_test::containers::remove_pod(&mut s.client, &pod_id).await;
}
