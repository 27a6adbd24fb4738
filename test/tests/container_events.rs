//! GetContainerEvents end to end, with the real daemon, shim and runc: the
//! life of a pod and its containers reaches every streaming client in
//! order, an exit the container makes by itself arrives as it happens (from
//! the shim's event, no list call needed), and a client that never reads is
//! dropped instead of growing the daemon.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crio_api::client::{CriClient, connect_with};
use crio_api::cri::{
    ContainerEventResponse, ContainerEventType, ContainerState, GetEventsRequest, NamespaceMode,
    RemoveContainerRequest, VersionRequest,
};
use crio_test::containers::{Setup, container, create, run_pod, setup, start_container, stop};
use crio_test::pods::pod_config;
use nix::sys::signal::Signal;
use tonic::{Code, Streaming};

const NODE: i32 = NamespaceMode::Node as i32;
const CREATED: i32 = ContainerEventType::ContainerCreatedEvent as i32;
const STARTED: i32 = ContainerEventType::ContainerStartedEvent as i32;
const STOPPED: i32 = ContainerEventType::ContainerStoppedEvent as i32;
const DELETED: i32 = ContainerEventType::ContainerDeletedEvent as i32;

/// A client of its own (a connection of its own), without a call deadline.
async fn unbounded_client(setup: &Setup) -> CriClient {
    connect_with(
        &setup.world.daemon.endpoint(),
        Duration::from_secs(30),
        None,
    )
    .await
    .unwrap()
}

/// A stream of container events on a connection of its own (kept open
/// with the client).
async fn subscribe(setup: &Setup) -> (Streaming<ContainerEventResponse>, CriClient) {
    let mut client = unbounded_client(setup).await;
    let events = client
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    (events, client)
}

/// Reads events into `seen` until `id` reaches `kind` (20 s at most); that event.
async fn read_until(
    events: &mut Streaming<ContainerEventResponse>,
    seen: &mut Vec<ContainerEventResponse>,
    id: &str,
    kind: i32,
) -> ContainerEventResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.message())
            .await
            .unwrap_or_else(|_| panic!("no event {kind} for {id}; seen: {:#?}", steps(seen)))
            .unwrap()
            .expect("the stream ended");
        seen.push(event.clone());
        if event.container_id == id && event.container_event_type == kind {
            return event;
        }
    }
}

/// The (ID, type) of each event.
fn steps(events: &[ContainerEventResponse]) -> Vec<(String, i32)> {
    events
        .iter()
        .map(|e| (e.container_id.clone(), e.container_event_type))
        .collect()
}

/// The types of `id`'s events, in order.
fn types_of(events: &[ContainerEventResponse], id: &str) -> Vec<i32> {
    events
        .iter()
        .filter(|e| e.container_id == id)
        .map(|e| e.container_event_type)
        .collect()
}

/// Creates and starts a container of `pod` that exits 3 at once; its ID.
async fn run_quitter(client: &mut CriClient, pod: &str, image: &str) -> String {
    let config = container("quitter", image, &["sh", "-c", "exit 3"]);
    let id = create(client, pod, config).await.unwrap();
    start_container(client, id.clone()).await;
    id
}

async fn remove_container(client: &mut CriClient, id: &str) {
    client
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_sees_each_life_in_order_and_exits_as_they_happen() {
    let setup = setup().await;
    let mut client = unbounded_client(&setup).await;
    let busybox = setup.images.busybox.reference.clone();
    let (mut first, _first_client) = subscribe(&setup).await;
    let (mut second, _second_client) = subscribe(&setup).await;
    let mut seen = Vec::new();

    let pod = run_pod(&mut client, pod_config("events", NODE, NODE)).await;
    let sleeper = create(
        &mut client,
        &pod,
        container("sleeper", &busybox, &["sleep", "600"]),
    )
    .await
    .unwrap();
    start_container(&mut client, sleeper.clone()).await;
    stop(&mut client, &sleeper).await;
    remove_container(&mut client, &sleeper).await;

    // A container that ends by itself: its exit arrives with its status,
    // without any list or status call to notice it.
    let quitter = run_quitter(&mut client, &pod, &busybox).await;
    let stopped = read_until(&mut first, &mut seen, &quitter, STOPPED).await;
    let status = stopped
        .containers_statuses
        .iter()
        .find(|s| s.id == quitter)
        .expect("the stopped container's status");
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    assert!(status.finished_at >= status.started_at && status.started_at > 0);
    let sandbox = stopped
        .pod_sandbox_status
        .as_ref()
        .expect("the pod's status");
    assert_eq!(sandbox.id, pod);
    assert_eq!(sandbox.metadata.as_ref().unwrap().uid, "uid-events");

    remove_container(&mut client, &quitter).await;
    crio_test::containers::remove_pod(&mut client, &pod).await;
    read_until(&mut first, &mut seen, &pod, DELETED).await;

    let life = [CREATED, STARTED, STOPPED, DELETED];
    for id in [&pod, &sleeper, &quitter] {
        assert_eq!(types_of(&seen, id), life, "{id}: {:#?}", steps(&seen));
    }
    // The pod's events stand for its sandbox; each carries its status.
    assert!(seen.iter().all(|e| e.pod_sandbox_status.is_some()));
    assert!(seen.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    let sleeper_stop = seen
        .iter()
        .find(|e| e.container_id == sleeper && e.container_event_type == STOPPED)
        .unwrap();
    let sleeper_status = sleeper_stop
        .containers_statuses
        .iter()
        .find(|s| s.id == sleeper);
    assert_eq!(
        sleeper_status.map(|s| s.state),
        Some(ContainerState::ContainerExited as i32)
    );
    let deleted = seen.last().unwrap();
    assert!(deleted.containers_statuses.is_empty(), "{deleted:?}");

    // The second client saw the same, in the same order.
    let mut also = Vec::new();
    read_until(&mut second, &mut also, &pod, DELETED).await;
    assert_eq!(steps(&also), steps(&seen));

    // A stop ends the streams, instead of waiting for them to end.
    let mut setup = setup;
    let daemon = &mut setup.world.daemon;
    let stopped = daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    assert!(stopped.success(), "{stopped}");
    assert!(
        !daemon.log().contains("in-flight calls still running"),
        "{}",
        daemon.log()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), first.message()).await;
    assert!(matches!(end, Ok(Ok(None))), "{end:?}");
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Creates, starts and removes `cycles` containers running `true` in `pod`:
/// four events each.
async fn churn(mut client: CriClient, pod: String, busybox: String, worker: usize, cycles: usize) {
    for i in 0..cycles {
        let name = format!("churn-{worker}-{i}");
        let id = create(&mut client, &pod, container(&name, &busybox, &["true"]))
            .await
            .unwrap();
        start_container(&mut client, id.clone()).await;
        remove_container(&mut client, &id).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_dropped_not_buffered() {
    let setup = setup().await;
    let mut client = unbounded_client(&setup).await;
    let busybox = setup.images.busybox.reference.clone();
    let pid = setup.world.daemon.pid().unwrap();
    let pod = run_pod(&mut client, pod_config("stalled", NODE, NODE)).await;
    // Heavy events: each carries the statuses of these (16 KiB of
    // annotations each), so buffering every event for the stalled client
    // would take far more than the bound below.
    for i in 0..8 {
        let mut config = container(&format!("heavy-{i}"), &busybox, &["true"]);
        config.annotations = HashMap::from([("ballast".to_string(), "x".repeat(16 << 10))]);
        create(&mut client, &pod, config).await.unwrap();
    }
    let (mut stalled, _stalled_client) = subscribe(&setup).await;
    let before = rss_kib(pid);

    // 4 workers × 160 containers × 4 events: 2560 events, well past the ring.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(churn(client, pod.clone(), busybox.clone(), w, 160))
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let grown = rss_kib(pid).saturating_sub(before);
    eprintln!("the daemon's RSS: {before} KiB before, grown by {grown} KiB");
    assert!(
        grown < 64 << 10,
        "the daemon grew by {grown} KiB while a client did not read"
    );

    // The daemon still answers, and a new client gets new events.
    let answered = tokio::time::timeout(
        Duration::from_secs(1),
        client.runtime.version(VersionRequest::default()),
    )
    .await;
    assert!(matches!(answered, Ok(Ok(_))), "{answered:?}");
    let (mut fresh, _fresh_client) = subscribe(&setup).await;
    let late = create(&mut client, &pod, container("late", &busybox, &["true"]))
        .await
        .unwrap();
    read_until(&mut fresh, &mut Vec::new(), &late, CREATED).await;

    // The stalled client, reading at last: what was in flight, then told it
    // fell behind.
    let deadline = Instant::now() + Duration::from_secs(20);
    let error = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stalled.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Err(e)) => break e,
            other => panic!("the stalled client was not dropped: {other:?}"),
        }
    };
    assert_eq!(error.code(), Code::Aborted, "{error:?}");
    assert!(error.message().contains("behind"), "{error:?}");
    crio_test::containers::remove_pod(&mut client, &pod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crioctl_prints_events_as_they_come() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let setup = setup().await;
    let mut client = unbounded_client(&setup).await;
    let busybox = setup.images.busybox.reference.clone();
    let mut crioctl = tokio::process::Command::new(crio_test::bins::bin("crioctl"))
        .args(["--runtime-endpoint", &setup.world.daemon.endpoint()])
        .args(["events", "-o", "table"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(crioctl.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("crioctl printed nothing")
            .unwrap()
            .expect("crioctl ended")
    };
    // Listening once it prints the first pod it is shown.
    let pod = run_pod(&mut client, pod_config("cli-events", NODE, NODE)).await;
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let probe = loop {
        let probe = create(&mut client, &pod, container("probe", &busybox, &["true"]))
            .await
            .unwrap();
        remove_container(&mut client, &probe).await;
        let printed = tokio::time::timeout(Duration::from_millis(500), next_line()).await;
        if let Ok(line) = printed {
            first.push(line);
            break probe;
        }
        assert!(Instant::now() < deadline, "crioctl events never listened");
    };
    let quitter = run_quitter(&mut client, &pod, &busybox).await;
    let mut printed = first;
    while !printed
        .last()
        .is_some_and(|l| l.contains(&quitter) && l.contains("CONTAINER_STOPPED_EVENT"))
    {
        printed.push(next_line().await);
    }
    let of_quitter: Vec<Vec<&str>> = printed
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.get(2) == Some(&quitter.as_str()))
        .collect();
    let kinds: Vec<&str> = of_quitter.iter().map(|cols| cols[1]).collect();
    assert_eq!(
        kinds,
        [
            "CONTAINER_CREATED_EVENT",
            "CONTAINER_STARTED_EVENT",
            "CONTAINER_STOPPED_EVENT"
        ],
        "{printed:#?}"
    );
    assert!(
        of_quitter
            .iter()
            .all(|cols| cols[3] == pod && cols[0].ends_with('Z'))
    );
    assert!(
        printed[0].contains(&probe) || printed[0].contains(&pod),
        "{printed:#?}"
    );
    crioctl.kill().await.unwrap();
    crio_test::containers::remove_pod(&mut client, &pod).await;
}
