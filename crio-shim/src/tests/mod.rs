//! Unit tests of the task operations over a fake runtime: ordering,
//! rollback of each failing step, idempotent retries and the exit-file
//! protocol, without root (no mounts, no cgroups: the bundles name none).

mod fake;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use containerd_shim::protos::api;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::topics;
use crio_contract::bundle::{EXIT_FILE, exit_record};

use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use crio_contract::trace::TRACEPARENT;

use crate::error::ShimError;
use crate::events::Events;
use crate::service::TaskService;
use crate::tasks::Tasks;
use fake::{FakeRuntime, Recorder};

/// A shim over the fake runtime with one bundle directory.
struct World {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    sockets: PathBuf,
    runtime: Arc<FakeRuntime>,
    events: Arc<Recorder>,
    tasks: Arc<Tasks>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (bundle, sockets) = (dir.path().join("bundle"), dir.path().join("s"));
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::create_dir_all(&sockets).unwrap();
        std::fs::write(bundle.join("config.json"), r#"{"annotations": {}}"#).unwrap();
        let runtime = Arc::new(FakeRuntime::default());
        let events = Arc::new(Recorder::new(&bundle));
        let mut tasks = Tasks::new(
            runtime.clone(),
            sockets.clone(),
            Events::new("k8s.io".into(), events.clone()),
        );
        tasks.cgroup_root = dir.path().join("no-cgroupfs");
        Self {
            _dir: dir,
            bundle,
            sockets,
            runtime,
            events,
            tasks: Arc::new(tasks),
        }
    }

    fn create_request(&self, id: &str) -> api::CreateTaskRequest {
        api::CreateTaskRequest {
            id: id.into(),
            bundle: self.bundle.display().to_string(),
            ..Default::default()
        }
    }

    async fn create(&self, id: &str) -> Result<u32, ShimError> {
        self.tasks.create(self.create_request(id)).await
    }

    fn fail(&self, step: &'static str) {
        self.runtime.fail.lock().insert(step);
    }

    /// The sockets left in the socket directory.
    fn sockets(&self) -> Vec<String> {
        std::fs::read_dir(&self.sockets)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn exec_request(&self, id: &str, exec_id: &str) -> api::ExecProcessRequest {
        let mut spec = Any::new();
        spec.value = br#"{"args": ["true"]}"#.to_vec();
        api::ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            spec: MessageField::some(spec),
            ..Default::default()
        }
    }
}

/// Waits until `cond` holds (a spawned task's work), at most a second.
async fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn create_start_stop_delete_run_in_order_and_the_exit_is_recorded_first() {
    let w = World::new();
    let pid = w.create("c1").await.unwrap();
    let c = w.tasks.container("c1").unwrap();
    assert_eq!(*c.status.lock(), api::Status::CREATED);
    assert_eq!(w.tasks.start("c1").await.unwrap(), pid);
    assert_eq!(*c.status.lock(), api::Status::RUNNING);
    assert_eq!(w.tasks.pids("c1").await.unwrap(), [pid]);

    let wait = tokio::spawn({
        let tasks = w.tasks.clone();
        async move { tasks.wait("c1", "").await }
    });
    w.tasks.kill("c1", 15, false).await.unwrap();
    let exit = wait.await.unwrap().unwrap();
    assert_eq!(exit.0, 143);
    // Wait answered after the exit file was durable, with the contract's record.
    let recorded = exit_record(exit.0, exit.1);
    assert_eq!(
        std::fs::read_to_string(w.bundle.join(EXIT_FILE)).unwrap(),
        recorded
    );
    assert_eq!(*c.status.lock(), api::Status::STOPPED);
    eventually(|| w.events.topics().len() == 2).await;
    let events = w.events.events.lock().clone();
    assert_eq!(events[0], (topics::TASK_START_EVENT_TOPIC.into(), None));
    // TaskExit was published with the exit file already in place.
    assert_eq!(
        events[1],
        (topics::TASK_EXIT_EVENT_TOPIC.into(), Some(recorded))
    );

    assert_eq!(w.tasks.delete("c1").await.unwrap(), (pid, exit));
    assert_eq!(
        w.runtime.calls(),
        ["create c1", "start c1", "ps c1", "kill c1 15", "delete c1"]
    );
    assert!(w.tasks.is_empty());
    assert_eq!(w.runtime.live_watches.load(Ordering::SeqCst), 0);
    eventually(|| w.sockets().is_empty()).await;
}

#[tokio::test]
async fn an_exit_nobody_waits_for_is_in_the_bundle_before_taskexit() {
    let w = World::new();
    let pid = w.create("c1").await.unwrap();
    w.tasks.start("c1").await.unwrap();
    w.runtime.exit(pid, 3);
    eventually(|| w.events.topics().len() == 2).await;
    let (topic, file) = w.events.events.lock()[1].clone();
    assert_eq!(topic, topics::TASK_EXIT_EVENT_TOPIC);
    let exit = w.tasks.wait("c1", "").await.unwrap();
    assert_eq!(exit.0, 3);
    assert_eq!(file, Some(exit_record(3, exit.1)));
    assert!(!w.bundle.join(".exit.tmp").exists());
}

#[tokio::test]
async fn a_failed_create_leaves_nothing_behind() {
    for step in ["create", "pid-file"] {
        let w = World::new();
        w.fail(step);
        let err = w.create("c1").await.unwrap_err();
        assert!(
            matches!(err, ShimError::Runtime { .. } | ShimError::NoPidFile(_)),
            "{step}: {err}"
        );
        assert!(w.tasks.container("c1").is_err(), "{step}");
        assert_eq!(w.runtime.live_watches.load(Ordering::SeqCst), 0, "{step}");
        assert!(w.sockets().is_empty(), "{step}: {:?}", w.sockets());
        assert!(w.events.topics().is_empty(), "{step}");
        // A runtime container that was made is deleted again.
        let deleted = w.runtime.calls().contains(&"delete c1".to_string());
        assert_eq!(deleted, step == "pid-file", "{step}");
        // The retry succeeds.
        w.runtime.fail.lock().clear();
        w.create("c1").await.unwrap();
    }
}

#[tokio::test]
async fn a_log_that_cannot_be_opened_fails_before_the_runtime_runs() {
    let w = World::new();
    let spec = format!(
        r#"{{"annotations": {{"{}": "/elsewhere/0.log", "{}": "{}"}}}}"#,
        crio_contract::annotations::LOG_PATH,
        crio_contract::annotations::LOG_DIRECTORY,
        w.bundle.join("logs").display(),
    );
    std::fs::write(w.bundle.join("config.json"), spec).unwrap();
    let err = w.create("c1").await.unwrap_err();
    assert!(matches!(err, ShimError::OpenLog { .. }), "{err}");
    assert!(w.runtime.calls().is_empty());
    assert_eq!(w.runtime.live_watches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_start_leaves_the_container_created() {
    let w = World::new();
    w.create("c1").await.unwrap();
    w.fail("start");
    assert!(w.tasks.start("c1").await.is_err());
    let c = w.tasks.container("c1").unwrap();
    assert_eq!(*c.status.lock(), api::Status::CREATED);
    assert!(w.events.topics().is_empty());
    w.runtime.fail.lock().clear();
    w.tasks.start("c1").await.unwrap();
    assert_eq!(w.events.topics(), [topics::TASK_START_EVENT_TOPIC]);
}

#[tokio::test]
async fn retries_are_answered_without_harm() {
    let w = World::new();
    let pid = w.create("c1").await.unwrap();
    // A second Create of the same id touches nothing.
    assert!(matches!(
        w.create("c1").await,
        Err(ShimError::ContainerExists(_))
    ));
    assert_eq!(w.tasks.container("c1").unwrap().pid, pid);
    w.tasks.start("c1").await.unwrap();
    w.runtime.exit(pid, 0);
    w.tasks.wait("c1", "").await.unwrap();
    // Kill of an exited init is a no-op.
    w.tasks.kill("c1", 9, false).await.unwrap();
    // A failed delete keeps the container; the retry deletes it; a third
    // says it is gone.
    w.fail("delete");
    assert!(w.tasks.delete("c1").await.is_err());
    assert!(w.tasks.container("c1").is_ok());
    w.runtime.fail.lock().clear();
    w.tasks.delete("c1").await.unwrap();
    assert!(matches!(
        w.tasks.delete("c1").await,
        Err(ShimError::ContainerNotFound(_))
    ));
    assert_eq!(
        w.runtime.calls(),
        ["create c1", "start c1", "delete c1", "delete c1"]
    );
}

#[tokio::test]
async fn execs_run_in_order_and_retries_are_refused_or_harmless() {
    let w = World::new();
    w.create("c1").await.unwrap();
    w.tasks.start("c1").await.unwrap();
    assert!(matches!(
        w.tasks.exec(&w.exec_request("c1", "../x")).await,
        Err(ShimError::ExecIdNotPlain(_))
    ));
    w.tasks.exec(&w.exec_request("c1", "e1")).await.unwrap();
    assert!(w.bundle.join("exec-e1.json").exists());
    assert!(matches!(
        w.tasks.exec(&w.exec_request("c1", "e1")).await,
        Err(ShimError::ExecExists { .. })
    ));
    let pid = w.tasks.start_exec("c1", "e1").await.unwrap();
    assert!(!w.bundle.join("exec-e1.pid").exists());
    w.runtime.exit(pid, 7);
    let exit = w.tasks.wait("c1", "e1").await.unwrap();
    assert_eq!(exit.0, 7);
    // Kill of an exited exec is a no-op.
    w.tasks.kill_exec("c1", "e1", 9).unwrap();
    assert_eq!(w.tasks.delete_exec("c1", "e1").await.unwrap(), (pid, exit));
    assert!(!w.bundle.join("exec-e1.json").exists());
    assert!(matches!(
        w.tasks.delete_exec("c1", "e1").await,
        Err(ShimError::ExecNotFound { .. })
    ));
    // An exec leaves no exit file: that is the init's.
    assert!(!w.bundle.join(EXIT_FILE).exists());
    assert_eq!(
        w.runtime.calls(),
        ["create c1", "start c1", "exec c1 exec-e1.json"]
    );
}

#[tokio::test]
async fn a_failed_exec_start_ends_its_watch_and_can_be_deleted() {
    let w = World::new();
    w.create("c1").await.unwrap();
    w.tasks.exec(&w.exec_request("c1", "e1")).await.unwrap();
    w.fail("exec");
    assert!(w.tasks.start_exec("c1", "e1").await.is_err());
    // The init's watch only.
    assert_eq!(w.runtime.live_watches.load(Ordering::SeqCst), 1);
    w.runtime.fail.lock().clear();
    w.fail("pid-file");
    assert!(matches!(
        w.tasks.start_exec("c1", "e1").await,
        Err(ShimError::NoPidFile(_))
    ));
    assert_eq!(w.runtime.live_watches.load(Ordering::SeqCst), 1);
    let (pid, exit) = w.tasks.delete_exec("c1", "e1").await.unwrap();
    assert_eq!((pid, exit.0), (0, 137));
    eventually(|| w.sockets() == ["c1.attach"]).await;
}

#[tokio::test]
async fn pause_resume_and_update_go_through_the_runtime() {
    let w = World::new();
    w.create("c1").await.unwrap();
    w.tasks.start("c1").await.unwrap();
    w.tasks.set_paused("c1", true).await.unwrap();
    let c = w.tasks.container("c1").unwrap();
    assert_eq!(*c.status.lock(), api::Status::PAUSED);
    w.tasks.set_paused("c1", false).await.unwrap();
    assert_eq!(*c.status.lock(), api::Status::RUNNING);
    assert!(matches!(
        w.tasks.update("c1", Some(b"not json")).await,
        Err(ShimError::BadResources(_))
    ));
    assert!(matches!(
        w.tasks.update("c1", None).await,
        Err(ShimError::NoResources)
    ));
    w.tasks
        .update("c1", Some(br#"{"pids":{"limit":5}}"#))
        .await
        .unwrap();
    assert!(!w.bundle.join("update.json").exists());
    assert!(matches!(
        w.tasks.stats("c1").await,
        Err(ShimError::NoCgroup)
    ));
    assert_eq!(
        w.runtime.calls()[2..],
        ["pause c1", "resume c1", r#"update c1 {"pids":{"limit":5}}"#]
    );
    assert_eq!(
        w.events.topics(),
        [
            topics::TASK_START_EVENT_TOPIC,
            topics::TASK_PAUSED_EVENT_TOPIC,
            topics::TASK_RESUMED_EVENT_TOPIC
        ]
    );
}

#[test]
fn errors_become_the_status_codes_clients_rely_on() {
    use containerd_shim::protos::ttrpc::{Code, Error};
    let code = |e: ShimError| match crate::service::status(e) {
        Error::RpcStatus(s) => s.code(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(ShimError::ContainerNotFound("c".into())),
        Code::NOT_FOUND
    );
    assert_eq!(
        code(ShimError::ContainerExists("c".into())),
        Code::ALREADY_EXISTS
    );
    assert_eq!(code(ShimError::NoProcessSpec), Code::INVALID_ARGUMENT);
    assert_eq!(code(ShimError::NoCgroup), Code::FAILED_PRECONDITION);
    let runtime = ShimError::Runtime {
        what: "kill container c".into(),
        message: "no such process".into(),
    };
    assert_eq!(runtime.to_string(), "kill container c: no such process");
    assert_eq!(code(runtime), Code::UNKNOWN);
    assert_eq!(code(ShimError::NoPidFile("exec ")), Code::INTERNAL);
}

/// A task call's context, with `traceparent` in its metadata if given.
fn ttrpc_context(traceparent: Option<&str>) -> TtrpcContext {
    TtrpcContext {
        mh: Default::default(),
        metadata: traceparent
            .map(|p| (TRACEPARENT.to_string(), vec![p.to_string()]))
            .into_iter()
            .collect(),
        timeout_nano: 0,
        connection_data: Default::default(),
    }
}

#[tokio::test]
async fn traced_calls_send_their_spans_and_untraced_ones_none() {
    let w = World::new();
    let runtime = crate::trace::Traced::new(fake::FakeRuntime::default(), "fake".into());
    let runtime = Arc::new(runtime);
    let events = Events::new("k8s.io".into(), w.events.clone());
    let tasks = Arc::new(Tasks::new(runtime, w.sockets.clone(), events));
    let service = TaskService::with_tasks(tasks, Arc::new(Default::default()));

    // Without a traceparent (tracing off), or with an unsampled one: nothing.
    service
        .create(&ttrpc_context(None), w.create_request("c1"))
        .await
        .unwrap();
    let unsampled = "00-0000000000000000000000000000000a-000000000000000b-00";
    let kill = api::KillRequest {
        id: "c1".into(),
        signal: 9,
        ..Default::default()
    };
    let _ = service.kill(&ttrpc_context(Some(unsampled)), kill).await;
    assert!(w.events.spans.lock().is_empty());

    // Sampled: the call's span under the caller's, the runtime's under it.
    let sampled = "00-0000000000000000000000000000000a-000000000000000b-01";
    let delete = api::DeleteRequest {
        id: "c1".into(),
        ..Default::default()
    };
    service
        .delete(&ttrpc_context(Some(sampled)), delete)
        .await
        .unwrap();
    let spans = w.events.spans.lock().clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["fake delete", "shim delete"]);
    let (runtime_span, call) = (&spans[0], &spans[1]);
    assert!(spans.iter().all(|s| s.trace_id == 0xa));
    assert_eq!(call.parent_span_id, 0xb);
    assert_eq!(runtime_span.parent_span_id, call.span_id);
    assert!(call.start_nanos <= runtime_span.start_nanos);
    assert!(runtime_span.end_nanos <= call.end_nanos);
}
