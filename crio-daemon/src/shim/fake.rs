//! A fake of the pod shims for unit tests: it records every call, keeps
//! task states in memory, and fails the step it is told to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{ExecProcess, PodShims, ShimError, Task, TaskClient, TaskError, TaskState, TaskStatus};

/// What the fake shims did and will do.
#[derive(Default)]
struct Shared {
    /// Every call, in order: `"create <id>"`, `"kill <id> 15"`…
    calls: Vec<String>,
    /// Task states by container (or `container/exec`) ID.
    tasks: HashMap<String, TaskState>,
    /// The call (its first word) that fails next, and how.
    fail: Option<(String, TaskError)>,
    /// Whether the shims are gone (every call unreachable).
    gone: bool,
    /// Whether the shims are stopped (every call waits until woken).
    hung: bool,
    /// The pid a started process gets (0: this test process's, alive).
    pid: u32,
}

/// Fake pod shims (and their task clients).
#[derive(Clone, Default)]
pub struct FakeShims {
    shared: Arc<Mutex<Shared>>,
    socket_dir: PathBuf,
}

impl FakeShims {
    /// Shims whose (unused) sockets would be in `socket_dir`.
    pub fn new(socket_dir: &Path) -> Self {
        Self {
            shared: Arc::default(),
            socket_dir: socket_dir.to_path_buf(),
        }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }

    /// The calls so far whose first word is one of `kinds`.
    pub fn calls_of(&self, kinds: &[&str]) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| kinds.iter().any(|k| c.split(' ').next() == Some(k)))
            .collect()
    }

    /// Makes the next `call` (its first word, e.g. "create") fail with `e`.
    pub fn fail_next(&self, call: &str, e: TaskError) {
        self.shared.lock().fail = Some((call.to_string(), e));
    }

    /// Makes every call unreachable from now on (the shim died).
    pub fn go_away(&self) {
        self.shared.lock().gone = true;
    }

    /// Makes every call wait, unanswered, until [`Self::wake`] (the shim
    /// was stopped: it exists, it does not answer).
    pub fn hang(&self) {
        self.shared.lock().hung = true;
    }

    /// Lets the calls of a hung shim go on.
    pub fn wake(&self) {
        self.shared.lock().hung = false;
    }

    /// The pid processes started from now on get.
    pub fn set_pid(&self, pid: u32) {
        self.shared.lock().pid = pid;
    }

    /// Waits while the shims are hung.
    async fn answer(&self) {
        while self.shared.lock().hung {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Records `call`; the error it was told to fail with, if any.
    fn record(&self, call: String) -> Result<(), TaskError> {
        let mut shared = self.shared.lock();
        let word = call.split(' ').next().unwrap_or_default().to_string();
        shared.calls.push(call);
        if shared.gone {
            return Err(TaskError::Unreachable("connection reset".into()));
        }
        match shared.fail.take() {
            Some((failing, e)) if failing == word => Err(e),
            other => {
                shared.fail = other;
                Ok(())
            }
        }
    }

    fn key(id: &str, exec_id: &str) -> String {
        match exec_id {
            "" => id.to_string(),
            e => format!("{id}/{e}"),
        }
    }

    fn state_of(&self, key: &str) -> Result<TaskState, TaskError> {
        self.shared
            .lock()
            .tasks
            .get(key)
            .copied()
            .ok_or_else(|| TaskError::NotFound(format!("task {key} not found")))
    }

    fn set(&self, key: String, state: TaskState) {
        self.shared.lock().tasks.insert(key, state);
    }
}

fn created() -> TaskState {
    TaskState {
        status: TaskStatus::Created,
        pid: 0,
        exit_status: 0,
        exited_at: 0,
    }
}

#[async_trait::async_trait]
impl TaskClient for FakeShims {
    async fn create(&self, id: &str, _bundle: &Path, _terminal: bool) -> Result<(), TaskError> {
        self.answer().await;
        self.record(format!("create {id}"))?;
        self.set(id.to_string(), created());
        Ok(())
    }

    async fn start(&self, id: &str, exec_id: &str) -> Result<u32, TaskError> {
        self.answer().await;
        self.record(format!("start {}", Self::key(id, exec_id)))?;
        let key = Self::key(id, exec_id);
        let mut state = self.state_of(&key)?;
        state.status = TaskStatus::Running;
        state.pid = match self.shared.lock().pid {
            0 => std::process::id(),
            pid => pid,
        };
        self.set(key, state);
        Ok(state.pid)
    }

    async fn kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        _all: bool,
    ) -> Result<(), TaskError> {
        self.answer().await;
        let key = Self::key(id, exec_id);
        self.record(format!("kill {key} {signal}"))?;
        let mut state = self.state_of(&key)?;
        state.status = TaskStatus::Stopped;
        state.exit_status = 128 + signal;
        state.exited_at = crio_api::time::now_nanos();
        self.set(key, state);
        Ok(())
    }

    async fn wait(&self, id: &str, exec_id: &str, _: Option<Duration>) -> Result<u32, TaskError> {
        self.answer().await;
        let key = Self::key(id, exec_id);
        self.record(format!("wait {key}"))?;
        Ok(self.state_of(&key)?.exit_status)
    }

    async fn delete(&self, id: &str, exec_id: &str) -> Result<(), TaskError> {
        self.answer().await;
        let key = Self::key(id, exec_id);
        self.record(format!("delete {key}"))?;
        self.state_of(&key)?;
        self.shared.lock().tasks.remove(&key);
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<TaskState, TaskError> {
        self.answer().await;
        self.record(format!("state {id}"))?;
        self.state_of(id)
    }

    async fn exec(&self, p: ExecProcess) -> Result<(), TaskError> {
        self.answer().await;
        let key = Self::key(&p.id, &p.exec_id);
        self.record(format!("exec {key}"))?;
        self.set(key, created());
        Ok(())
    }

    async fn stats(
        &self,
        id: &str,
    ) -> Result<crio_api::task::cgroups::metrics::Metrics, TaskError> {
        self.answer().await;
        self.record(format!("stats {id}"))?;
        Ok(Default::default())
    }

    async fn update(&self, id: &str, _resources: Vec<u8>) -> Result<(), TaskError> {
        self.answer().await;
        self.record(format!("update {id}"))
    }

    async fn pause(&self, id: &str, paused: bool) -> Result<(), TaskError> {
        self.answer().await;
        let verb = if paused { "pause" } else { "resume" };
        self.record(format!("{verb} {id}"))
    }
}

#[async_trait::async_trait]
impl PodShims for FakeShims {
    fn check(&self) -> Result<(), ShimError> {
        Ok(())
    }

    async fn ensure(
        &self,
        id: &str,
        pod_dir: &Path,
        _cgroup: &str,
        _handler: &str,
    ) -> Result<Task, ShimError> {
        // A shim that died is replaced by a new one.
        self.shared.lock().gone = false;
        self.record(format!("ensure {id}"))
            .map_err(|e| ShimError::Step {
                what: "start shim".into(),
                message: e.to_string(),
            })?;
        self.task(id, pod_dir).await
    }

    async fn task(&self, id: &str, _pod_dir: &Path) -> Result<Task, ShimError> {
        if self.shared.lock().gone {
            return Err(ShimError::NoAddress {
                pod: id.to_string(),
                dir: "gone".into(),
            });
        }
        Ok(Arc::new(self.clone()))
    }

    fn forget(&self, _id: &str) {}

    fn alive(&self, _id: &str, _pod_dir: &Path) -> bool {
        !self.shared.lock().gone
    }

    async fn delete_action(&self, container_id: &str, _bundle: &Path, _handler: &str) {
        self.shared
            .lock()
            .calls
            .push(format!("delete-action {container_id}"));
    }

    async fn shutdown(&self, id: &str, _pod_dir: &Path, _cgroup: &str) {
        self.shared.lock().calls.push(format!("shutdown {id}"));
    }

    fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
}
