//! Unit tests of the container operations, against fake shims and a fake
//! rootfs: no root, no runtime, a few milliseconds each.

use super::create::check_log_path;

#[test]
fn log_paths_stay_below_the_log_directory() {
    for good in ["", "c.log", "c/0.log", "./c/0.log", "c/./0.log"] {
        assert!(check_log_path(good).is_ok(), "{good}");
    }
    for bad in [
        "/etc/passwd",
        "../x",
        "c/../../x",
        "c/..",
        "..",
        ".",
        "c/",
        "/",
    ] {
        let e = tonic::Status::from(check_log_path(bad).unwrap_err());
        assert_eq!(e.code(), crio_api::Code::InvalidArgument, "{bad}");
        assert!(e.message().starts_with("config.log_path: "), "{bad}: {e:?}");
    }
}

use crio_api::Code;

use super::ContainerState;
use crate::shim::TaskError;
use crate::testing::World;

fn code(e: crate::error::Error) -> Code {
    tonic::Status::from(e).code()
}

#[tokio::test]
async fn create_start_stop_remove_call_the_shim_in_order() {
    let w = World::new();
    let pod = w.pod("web").await;
    let id = w.containers.create(&pod, w.container("app")).await.unwrap();
    assert_eq!(
        w.containers.get(&id).unwrap().state,
        ContainerState::Created
    );
    assert!(w.bundle(&id).join("config.json").is_file());
    w.containers.start(&id).await.unwrap();
    let r = w.containers.get(&id).unwrap();
    assert_eq!(
        (r.state, r.pid),
        (ContainerState::Running, std::process::id())
    );
    w.containers.stop(&id, 10).await.unwrap();
    let r = w.containers.get(&id).unwrap();
    assert_eq!((r.state, r.exit_code), (ContainerState::Exited, 143));
    w.containers.remove(&id).await.unwrap();
    assert!(w.containers.get(&id).is_none());
    assert!(!w.bundle(&id).exists());
    let lifecycle = ["ensure", "create", "start", "kill", "wait", "delete"];
    assert_eq!(
        w.shims.calls_of(&lifecycle),
        [
            format!("ensure {pod}"),
            format!("ensure {pod}"),
            format!("create {id}"),
            format!("start {id}"),
            format!("kill {id} 15"),
            format!("wait {id}"),
            format!("delete {id}"),
        ]
    );
    let rootfs = w.bundle(&id).join("rootfs");
    assert_eq!(*w.rootfs.prepared.lock(), std::slice::from_ref(&rootfs));
    assert_eq!(*w.rootfs.released.lock(), [rootfs]);
}

/// After a failed create nothing of the container is left, and its name is
/// free again.
async fn assert_rolled_back(w: &World, pod: &str, failed: usize) {
    assert!(w.containers.list().is_empty(), "no record");
    let containers = w.dir.path().join("run/containers");
    assert_eq!(
        std::fs::read_dir(&containers).unwrap().count(),
        0,
        "no bundle"
    );
    let records = w.dir.path().join("root/containers");
    assert_eq!(
        std::fs::read_dir(&records).unwrap().count(),
        0,
        "no directory"
    );
    assert_eq!(w.rootfs.released.lock().len(), failed, "rootfs released");
    let id = w.containers.create(pod, w.container("app")).await.unwrap();
    assert!(w.containers.get(&id).is_some(), "the name is free again");
}

#[tokio::test]
async fn a_failed_task_create_rolls_everything_back() {
    let w = World::new();
    let pod = w.pod("web").await;
    w.shims.fail_next(
        "create",
        TaskError::Failed("runc create: no such file".into()),
    );
    let e = w
        .containers
        .create(&pod, w.container("app"))
        .await
        .unwrap_err();
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), Code::Unknown);
    assert_eq!(status.message(), "create task: runc create: no such file");
    assert_rolled_back(&w, &pod, 1).await;
}

#[tokio::test]
async fn a_shim_that_does_not_start_rolls_everything_back() {
    let w = World::new();
    let pod = w.pod("web").await;
    w.shims
        .fail_next("ensure", TaskError::Failed("exec format error".into()));
    let e = w
        .containers
        .create(&pod, w.container("app"))
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::Unavailable);
    assert!(w.shims.calls_of(&["create"]).is_empty());
    assert_rolled_back(&w, &pod, 1).await;
}

#[tokio::test]
async fn a_failed_rootfs_or_spec_rolls_everything_back() {
    let w = World::new();
    let pod = w.pod("web").await;
    *w.rootfs.fail.lock() = true;
    let e = w
        .containers
        .create(&pod, w.container("app"))
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::Internal);
    assert_rolled_back(&w, &pod, 1).await;

    // A spec that cannot be built: after the rootfs, before the shim.
    let w = World::new();
    let pod = w.pod("web").await;
    let mut bad = w.container("app");
    bad.linux = Some(crio_api::cri::LinuxContainerConfig {
        security_context: Some(crio_api::cri::LinuxContainerSecurityContext {
            namespace_options: Some(crio_api::cri::NamespaceOption {
                pid: crio_api::cri::NamespaceMode::Target as i32,
                target_id: "nosuchcontainer".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = w.containers.create(&pod, bad).await.unwrap_err();
    assert_eq!(code(e), Code::NotFound);
    assert!(w.shims.calls_of(&["create"]).is_empty());
    assert_rolled_back(&w, &pod, 1).await;
}

#[tokio::test]
async fn retries_of_a_create_get_the_same_container() {
    let w = World::new();
    let pod = w.pod("web").await;
    // Concurrent: the second waits for the first's outcome.
    let (a, b) = tokio::join!(
        w.containers.create(&pod, w.container("app")),
        w.containers.create(&pod, w.container("app")),
    );
    let id = a.unwrap();
    assert_eq!(b.unwrap(), id);
    // After the fact: the record answers.
    assert_eq!(
        w.containers.create(&pod, w.container("app")).await.unwrap(),
        id
    );
    assert_eq!(w.shims.calls_of(&["create"]).len(), 1);
    // Another request for the same name is refused.
    let mut other = w.container("app");
    other.command = vec!["true".into()];
    let e = tonic::Status::from(w.containers.create(&pod, other).await.unwrap_err());
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&id), "{e:?}");
}

#[tokio::test]
async fn stop_and_remove_twice_are_fine() {
    let w = World::new();
    let pod = w.pod("web").await;
    let id = w.containers.create(&pod, w.container("app")).await.unwrap();
    w.containers.start(&id).await.unwrap();
    w.containers.stop(&id, 10).await.unwrap();
    w.containers.stop(&id, 10).await.unwrap();
    assert_eq!(w.shims.calls_of(&["kill"]).len(), 1);
    w.containers.remove(&id).await.unwrap();
    w.containers.remove(&id).await.unwrap();
    assert_eq!(w.shims.calls_of(&["delete"]).len(), 1);
    // Unknown IDs: nothing to do.
    w.containers.stop("abcdef", 0).await.unwrap();
    w.containers.remove("abcdef").await.unwrap();
    let e = w.containers.start(&id).await.unwrap_err();
    assert_eq!(code(e), Code::NotFound);
}

#[tokio::test]
async fn a_start_that_fails_leaves_the_container_created() {
    let w = World::new();
    let pod = w.pod("web").await;
    let id = w.containers.create(&pod, w.container("app")).await.unwrap();
    w.shims
        .fail_next("start", TaskError::NotFound("no such task".into()));
    let e = tonic::Status::from(w.containers.start(&id).await.unwrap_err());
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "start task: no such task");
    assert_eq!(
        w.containers.get(&id).unwrap().state,
        ContainerState::Created
    );
    w.containers.start(&id).await.unwrap();
    let e = w.containers.start(&id).await.unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);
}

#[tokio::test]
async fn exec_sync_creates_starts_waits_and_deletes() {
    let w = World::new();
    let pod = w.pod("web").await;
    let id = w.containers.create(&pod, w.container("app")).await.unwrap();
    let e = w
        .containers
        .exec_sync(&id, vec!["true".into()], 0)
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition, "not running yet");
    w.containers.start(&id).await.unwrap();
    let (out, err, status) = w
        .containers
        .exec_sync(&id, vec!["true".into()], 5)
        .await
        .unwrap();
    assert_eq!((out.len(), err.len(), status), (0, 0, 0));
    let calls = w.shims.calls_of(&["exec", "start", "wait", "delete"]);
    let exec: Vec<_> = calls.iter().filter(|c| c.contains('/')).collect();
    let words: Vec<_> = exec.iter().map(|c| c.split(' ').next().unwrap()).collect();
    assert_eq!(words, ["exec", "start", "wait", "delete"]);
}

#[tokio::test]
async fn only_a_running_container_is_paused_and_resumed_through_its_shim() {
    let w = World::new();
    let pod = w.pod("web").await;
    let id = w.containers.create(&pod, w.container("app")).await.unwrap();
    let e = w.containers.set_paused(&id, true).await.unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition, "not running yet");
    w.containers.start(&id).await.unwrap();
    w.containers.set_paused(&id, true).await.unwrap();
    w.containers.set_paused(&id, false).await.unwrap();
    let calls = w.shims.calls_of(&["pause", "resume"]);
    assert_eq!(calls, [format!("pause {id}"), format!("resume {id}")]);
}

/// Waits until `done` holds; fails the test after five seconds.
async fn eventually(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_retry_of_a_create_under_way_counts_its_stage_as_stalled() {
    let w = World::new();
    let pod = w.pod("web").await;
    let series =
        "container_runtime_crio_resources_stalled_at_stage{stage=\"container runtime creation\"}";
    let stalled = || {
        let text = crate::metrics::global().render();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = stalled();
    let ensured = || w.shims.calls_of(&["ensure"]).len();
    let shims_asked = ensured();
    w.shims.hang();
    let first = tokio::spawn({
        let (containers, pod, config) = (w.containers.clone(), pod.clone(), w.container("app"));
        async move { containers.create(&pod, config).await }
    });
    // The create is at its shim's call, which hangs.
    eventually(|| ensured() > shims_asked).await;
    let retry = tokio::spawn({
        let (containers, pod, config) = (w.containers.clone(), pod.clone(), w.container("app"));
        async move { containers.create(&pod, config).await }
    });
    eventually(|| stalled() > before).await;
    w.shims.wake();
    let (first, retry) = (first.await.unwrap().unwrap(), retry.await.unwrap().unwrap());
    assert_eq!(first, retry);
    // (The metrics are the process's: another test's retry may count too.)
    assert!(stalled() > before);
}
