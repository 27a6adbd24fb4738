//! A pod's shim that stops answering (SIGSTOP) or dies (SIGKILL), with the
//! real daemon and runc: no read waits for it, no container is reported
//! exited without evidence, and a pod whose shim died is still stopped and
//! removed without leaving anything.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use crio_api::client::CriClient;
use crio_api::cri::{
    ContainerState, ContainerStats, ContainerStatusRequest, ListContainerStatsRequest,
    ListContainersRequest, ListPodSandboxRequest, ListPodSandboxStatsRequest, NamespaceMode,
    PodSandboxStatusRequest, StatusRequest, StopPodSandboxRequest, VersionRequest,
};
use crio_test::containers::{
    Setup, container, create, remove_pod, run_pod, setup, start_container, status, wait_exited,
};
use crio_test::pods::pod_config;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const POD: i32 = NamespaceMode::Pod as i32;

/// How long a shim stays stopped: the two minutes, four times the
/// longest deadline of the daemon (30 s, on ordinary shim calls), so that no
/// deadline passing can turn into a reported exit.
const STOPPED_FOR: Duration = Duration::from_secs(120);

/// The bound on a read: far above normal (under a millisecond, about 100 ms
/// on a loaded 2-core machine), four times below the shortest deadline of a
/// shim call (the 2 s liveness probe), so a read that waited on the stopped
/// shim cannot pass.
const READ_BOUND: Duration = Duration::from_millis(500);

/// The pid of pod `pod`'s shim.
fn shim_of(daemon_dir: &Path, pod: &str) -> i32 {
    let pids: Vec<i32> = crio_test::daemon::shims_of(daemon_dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(pod))
        })
        .collect();
    assert_eq!(pids.len(), 1, "one shim for pod {pod}: {pids:?}");
    pids[0]
}

/// Continues a stopped process when dropped, also when the test fails.
struct Stopped(Pid);

impl Stopped {
    fn stop(pid: i32) -> Self {
        let pid = Pid::from_raw(pid);
        kill(pid, Signal::SIGSTOP).unwrap();
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// Runs a read and checks it answered within [`READ_BOUND`].
async fn read<T>(what: &str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = call.await;
    let took = started.elapsed();
    assert!(took < READ_BOUND, "{what} took {took:?}");
    answer
}

/// A running `sleep` container in a new pod named `name`: (pod, container).
async fn sleeper(client: &mut CriClient, image: &str, name: &str) -> (String, String) {
    let pod = run_pod(client, pod_config(name, POD, POD)).await;
    let id = create(client, &pod, container(name, image, &["sleep", "600"]))
        .await
        .unwrap();
    start_container(client, id.clone()).await;
    (pod, id)
}

/// Every read the kubelet makes, each within the bound; the state and
/// reason of container `id`.
async fn read_everything(client: &mut CriClient, pod: &str, id: &str) -> (i32, String) {
    let mut c = client.clone();
    read("Version", c.runtime.version(VersionRequest::default()))
        .await
        .unwrap();
    read("Status", c.runtime.status(StatusRequest::default()))
        .await
        .unwrap();
    read(
        "ListPodSandbox",
        c.runtime.list_pod_sandbox(ListPodSandboxRequest::default()),
    )
    .await
    .unwrap();
    read(
        "ListContainers",
        c.runtime.list_containers(ListContainersRequest::default()),
    )
    .await
    .unwrap();
    let pod_status = PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: false,
    };
    read("PodSandboxStatus", c.runtime.pod_sandbox_status(pod_status))
        .await
        .unwrap();
    let request = ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    };
    let s = read("ContainerStatus", c.runtime.container_status(request))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    (s.state, s.reason)
}

/// The IDs of the containers with CPU figures: (from ListContainerStats,
/// from ListPodSandboxStats).
async fn containers_with_cpu(client: &mut CriClient) -> (Vec<String>, Vec<String>) {
    let listed = client
        .runtime
        .list_container_stats(ListContainerStatsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .stats;
    let of_pods = client
        .runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .stats
        .into_iter()
        .filter_map(|p| p.linux)
        .flat_map(|l| l.containers);
    (ids_with_cpu(listed.into_iter()), ids_with_cpu(of_pods))
}

fn ids_with_cpu(stats: impl Iterator<Item = ContainerStats>) -> Vec<String> {
    stats
        .filter(|s| s.cpu.is_some())
        .filter_map(|s| s.attributes.map(|a| a.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_shim_blocks_no_read_and_ends_no_container() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let image = images.busybox.reference.as_str();
    let (stopped_pod, stopped) = sleeper(&mut client, image, "stopped").await;
    let (_, other) = sleeper(&mut client, image, "other").await;
    let running = ContainerState::ContainerRunning as i32;
    let guard = Stopped::stop(shim_of(&world.daemon.path(""), &stopped_pod));

    // Stats answer with the other pods' figures, without the stopped one's.
    for with_cpu in <[_; 2]>::from(containers_with_cpu(&mut client).await) {
        assert!(with_cpu.contains(&other), "{with_cpu:?}");
        assert!(!with_cpu.contains(&stopped), "{with_cpu:?}");
    }

    // Pods come and go meanwhile; every read answers at once, and the
    // stopped shim's container stays running, its reason saying why.
    let started = Instant::now();
    let mut churned = 0;
    while started.elapsed() < STOPPED_FOR {
        let (pod, id) = sleeper(&mut client, image, &format!("churn{churned}")).await;
        let (state, reason) = read_everything(&mut client, &stopped_pod, &stopped).await;
        assert_eq!(state, running, "after {:?}", started.elapsed());
        assert_eq!(reason, "ShimNotResponding");
        let (state, _) = read_everything(&mut client, &pod, &id).await;
        assert_eq!(state, running);
        remove_pod(&mut client, &pod).await;
        churned += 1;
    }
    let (with_cpu, _) = containers_with_cpu(&mut client).await;
    assert!(with_cpu.contains(&other), "{with_cpu:?}");

    // Continued: still running, and once the shim answers again (the
    // daemon asks it every second) nothing is said any more.
    drop(guard);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (state, reason) = read_everything(&mut client, &stopped_pod, &stopped).await;
        assert_eq!(state, running);
        if reason.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still {reason} after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for with_cpu in <[_; 2]>::from(containers_with_cpu(&mut client).await) {
        assert!(with_cpu.contains(&stopped), "{with_cpu:?}");
    }
    assert_eq!(status(&mut client, &stopped).await.state, running);
    remove_pod(&mut client, &stopped_pod).await;
    assert!(churned > 0);
}

/// The pid of container `id`'s process, as verbose ContainerStatus says.
async fn pid_of(client: &mut CriClient, id: &str) -> i32 {
    let info = client
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = info["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0, "{info}");
    pid
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shim_is_told_truthfully_and_its_pod_removed() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let image = images.busybox.reference.as_str();
    let dir = world.daemon.path("");
    let (pod, id) = sleeper(&mut client, image, "orphan").await;
    let process = pid_of(&mut client, &id).await;
    // Another one, whose process outlives the shim until the pod stops.
    let survivor = create(
        &mut client,
        &pod,
        container("survivor", image, &["sleep", "600"]),
    )
    .await
    .unwrap();
    start_container(&mut client, survivor.clone()).await;
    let survivor_process = pid_of(&mut client, &survivor).await;
    let shim = shim_of(&dir, &pod);
    kill(Pid::from_raw(shim), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{shim}")).exists() {
        assert!(Instant::now() < deadline, "the shim was not reaped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Running while its process lives, past the daemon's watch.
    for _ in 0..15 {
        let (state, _) = read_everything(&mut client, &pod, &id).await;
        assert_eq!(state, ContainerState::ContainerRunning as i32);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its process killed: exited, the lost monitor named.
    kill(Pid::from_raw(process), Signal::SIGKILL).unwrap();
    let s = wait_exited(&mut client, &id).await;
    assert_eq!(s.reason, "ShimLost", "{s:?}");
    assert!(s.message.contains("shim"), "{s:?}");

    // A new container in the pod gets a new shim.
    let again = create(
        &mut client,
        &pod,
        container("again", image, &["sleep", "600"]),
    )
    .await
    .unwrap();
    start_container(&mut client, again.clone()).await;
    assert_eq!(
        status(&mut client, &again).await.state,
        ContainerState::ContainerRunning as i32
    );
    assert_ne!(shim_of(&dir, &pod), shim);

    assert_eq!(
        status(&mut client, &survivor).await.state,
        ContainerState::ContainerRunning as i32,
        "the new shim does not make the survivor's state up"
    );

    // The pod stops (the survivor, which no shim monitors, killed by the
    // daemon) and goes, and nothing of it is left.
    client
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    let s = status(&mut client, &survivor).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!(s.reason, "ShimLost", "{s:?}");
    remove_pod(&mut client, &pod).await;
    assert!(
        crio_test::daemon::shims_of(&dir).is_empty(),
        "a shim is left"
    );
    for pid in [process, survivor_process] {
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || zombie(pid));
    }
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    assert!(!world.daemon.path("ns/netns").join(&pod).exists());
    let listed = crio_test::containers::list_containers(&mut client).await;
    assert!(listed.is_empty(), "{listed:?}");
}

/// Whether `pid` is a zombie (dead, waiting for a slow reaper).
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
