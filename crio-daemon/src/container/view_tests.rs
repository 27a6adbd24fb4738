//! Unit tests of the daemon's view of containers over fake shims: exits
//! only on evidence, a silent or dead shim changes nothing by itself, and
//! a container whose shim died can still be stopped and removed.

use std::process::{Child, Command};
use std::time::Duration;

use crio_api::Code;
use crio_contract::bundle::{EXIT_FILE, OOM_FILE, exit_record};

use super::{ContainerState, SHIM_LOST};
use crate::shim::TaskError;
use crate::testing::World;

/// A world with a running container whose init is `process`.
async fn running(w: &World, process: &Sleeper) -> String {
    let pod = w.pod("web").await;
    w.shims.set_pid(process.0.id());
    let id = w.containers.create(&pod, w.container("app")).await.unwrap();
    w.containers.start(&id).await.unwrap();
    id
}

/// A process to stand for a container's init; killed and reaped when
/// dropped, also when the test fails.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Sleeper {
    Sleeper(Command::new("sleep").arg("30").spawn().unwrap())
}

#[tokio::test]
async fn a_shim_that_does_not_answer_is_no_evidence_of_an_exit() {
    let w = World::new();
    let process = sleeper();
    let id = running(&w, &process).await;
    let pod = w.containers.get(&id).unwrap().pod_id;
    assert!(w.containers.get(&id).unwrap().pid_start > 0);
    // A call that fails without an answer: the state stays, the trouble is
    // said.
    w.shims
        .fail_next("state", TaskError::Unreachable("timed out".into()));
    let e = w.containers.refresh(&id).await.unwrap_err();
    assert_eq!(tonic::Status::from(e).code(), Code::Unavailable);
    let r = w.containers.observe(&id).unwrap();
    assert_eq!(r.state, ContainerState::Running);
    let trouble = w.containers.shim_trouble(&pod).unwrap();
    assert!(trouble.contains("has not answered"), "{trouble}");
    // A hung shim: reads answer from memory at once.
    w.shims.hang();
    let stuck = tokio::time::timeout(Duration::from_millis(50), w.containers.refresh(&id)).await;
    assert!(stuck.is_err(), "the shim is hung");
    assert_eq!(
        w.containers.observe(&id).unwrap().state,
        ContainerState::Running
    );
    // Answering again: reconciled, nothing said any more.
    w.shims.wake();
    let r = w.containers.refresh(&id).await.unwrap();
    assert_eq!(r.state, ContainerState::Running);
    assert!(w.containers.shim_trouble(&pod).is_none());
}

#[tokio::test]
async fn the_exit_file_and_exit_events_are_evidence() {
    let w = World::new();
    let process = sleeper();
    let id = running(&w, &process).await;
    let other = w
        .containers
        .create(&w.pod("db").await, w.container("db"))
        .await
        .unwrap();
    w.containers.start(&other).await.unwrap();
    let bundle = w.bundle(&id);
    std::fs::write(
        bundle.join(EXIT_FILE),
        exit_record(3, 1_700_000_000_000_000_000),
    )
    .unwrap();
    std::fs::write(bundle.join(OOM_FILE), "").unwrap();
    w.shims.hang();
    // The stats calls' check finds the exit file without asking a shim.
    w.containers.observe_exit_files();
    let r = w.containers.get(&id).unwrap();
    assert_eq!(r.state, ContainerState::Exited);
    assert_eq!((r.exit_code, r.finished_at), (3, 1_700_000_000_000_000_000));
    assert!(r.oom_killed && r.message.is_empty());
    // An event's exit: in memory at once, on disk soon; the first stays.
    w.containers.record_exit(&other, 7, 42, false);
    w.containers.record_exit(&other, 9, 43, true);
    let r = w.containers.get(&other).unwrap();
    assert_eq!(
        (r.state, r.exit_code, r.finished_at),
        (ContainerState::Exited, 7, 42)
    );
    let file = w
        .dir
        .path()
        .join("root/containers")
        .join(&other)
        .join("record.json");
    let on_disk = || {
        let text = std::fs::read_to_string(&file).unwrap();
        serde_json::from_str::<super::ContainerRecord>(&text).unwrap()
    };
    for _ in 0..200 {
        if on_disk().state == ContainerState::Exited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        (on_disk().state, on_disk().exit_code),
        (ContainerState::Exited, 7)
    );
    w.containers.record_exit("nosuchcontainer", 1, 1, false);
    w.shims.wake();
}

#[tokio::test]
async fn a_container_whose_shim_died_is_running_while_its_process_lives() {
    let w = World::new();
    let mut process = sleeper();
    let id = running(&w, &process).await;
    let pod = w.containers.get(&id).unwrap().pod_id;
    w.shims.go_away();
    let e = w.containers.refresh(&id).await.unwrap_err();
    assert!(e.is_unreachable());
    let r = w.containers.observe(&id).unwrap();
    assert_eq!(r.state, ContainerState::Running, "its process lives");
    assert!(w.containers.shim_trouble(&pod).unwrap().contains("died"));
    // Stopping it kills the process through /proc; then it is exited with
    // the lost monitor named.
    w.containers.stop(&id, 10).await.unwrap();
    let r = w.containers.observe(&id).unwrap();
    assert_eq!(r.state, ContainerState::Exited);
    assert_eq!((r.reason.as_str(), r.exit_code), (SHIM_LOST, 255));
    assert!(r.message.contains("shim"), "{}", r.message);
    assert!(
        w.shims.calls_of(&["kill"]).is_empty(),
        "nothing asked of the dead shim"
    );
    let status = process.0.wait().unwrap();
    assert!(!status.success(), "killed");
    w.containers.remove(&id).await.unwrap();
    assert!(w.shims.calls().contains(&format!("delete-action {id}")));
    assert!(w.containers.get(&id).is_none());
}

#[tokio::test]
async fn a_process_gone_with_its_shim_is_exited_with_the_lost_monitor_named() {
    let w = World::new();
    let mut process = sleeper();
    let id = running(&w, &process).await;
    // Gone while the shim lives: its shim will write the exit file.
    process.0.kill().unwrap();
    assert_eq!(
        w.containers.observe(&id).unwrap().state,
        ContainerState::Running
    );
    w.shims.go_away();
    // Gone as soon as the kernel has made it a zombie.
    assert_lost(&w, &id).await;
}

#[tokio::test]
async fn a_new_shim_of_the_pod_leaves_the_dead_ones_containers_to_proc() {
    let w = World::new();
    let mut survivor = sleeper();
    let id = running(&w, &survivor).await;
    let pod = w.containers.get(&id).unwrap().pod_id;
    w.shims.go_away();
    // A new container in the pod: a new shim, which does not know the
    // first container.
    let next = w
        .containers
        .create(&pod, w.container("next"))
        .await
        .unwrap();
    assert!(w.containers.get(&id).unwrap().orphaned);
    assert!(!w.containers.get(&next).unwrap().orphaned);
    assert_eq!(
        w.containers.observe(&id).unwrap().state,
        ContainerState::Running,
        "its process lives"
    );
    survivor.0.kill().unwrap();
    assert_lost(&w, &id).await;
    // Removed without asking the new shim about it.
    w.containers.remove(&id).await.unwrap();
    assert!(w.shims.calls().contains(&format!("delete-action {id}")));
    assert!(!w.shims.calls().contains(&format!("delete {id}")));
}

/// Waits (a second at most) for container `id` to be observed exited, and
/// checks it is reported with its monitor lost.
async fn assert_lost(w: &World, id: &str) {
    let mut r = w.containers.observe(id).unwrap();
    for _ in 0..200 {
        if r.state == ContainerState::Exited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        r = w.containers.observe(id).unwrap();
    }
    assert_eq!(
        (r.state, r.reason.as_str()),
        (ContainerState::Exited, SHIM_LOST)
    );
}
