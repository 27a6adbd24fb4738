//! The seam between the daemon and a pod's shim: [`TaskClient`], the calls
//! the daemon makes on the containerd task API, implemented over ttrpc by
//! [`TtrpcTask`] and in tests by a recording fake.

use std::path::Path;
use std::time::Duration;

use crio_api::task::{self, ttrpc};

/// How long an ordinary task call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a task call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The shim does not know the task or process.
    #[error("{0}")]
    NotFound(String),
    /// The shim answered with another error (the runtime's).
    #[error("{0}")]
    Failed(String),
    /// The shim did not answer (gone, or its socket closed).
    #[error("{0}")]
    Unreachable(String),
}

impl From<ttrpc::Error> for TaskError {
    fn from(e: ttrpc::Error) -> Self {
        match &e {
            ttrpc::Error::RpcStatus(s) if s.code() == ttrpc::Code::NOT_FOUND => {
                Self::NotFound(s.message().to_string())
            }
            ttrpc::Error::RpcStatus(s) => Self::Failed(s.message().to_string()),
            other => Self::Unreachable(other.to_string()),
        }
    }
}

/// Where a task is in its life, as its shim reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Created,
    /// Running (or paused).
    Running,
    /// Its process has exited.
    Stopped,
    /// Anything else the shim may say.
    Unknown,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    /// Where it is.
    pub status: TaskStatus,
    /// Its init's pid (0 when none).
    pub pid: u32,
    /// Its exit status, once stopped.
    pub exit_status: u32,
    /// When it exited, CRI nanoseconds (0: unknown).
    pub exited_at: i64,
}

/// An exec process to create in a running container.
#[derive(Debug, Clone)]
pub struct ExecProcess {
    /// The container.
    pub id: String,
    /// The exec ID.
    pub exec_id: String,
    /// With a terminal.
    pub terminal: bool,
    /// stdin as the shim takes it ("attach": from its attach socket).
    pub stdin: String,
    /// Files the output goes to (empty: only to attach clients).
    pub stdout: String,
    /// See `stdout`.
    pub stderr: String,
    /// The OCI process (JSON).
    pub process: Vec<u8>,
}

/// The calls the daemon makes on a pod's shim. `exec_id` is empty for a
/// container's init process.
#[async_trait::async_trait]
pub trait TaskClient: Send + Sync {
    /// Creates container `id` from its bundle.
    async fn create(&self, id: &str, bundle: &Path, terminal: bool) -> Result<(), TaskError>;
    /// Starts a process; its pid.
    async fn start(&self, id: &str, exec_id: &str) -> Result<u32, TaskError>;
    /// Sends `signal` to a process (`all`: to every process of the container).
    async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), TaskError>;
    /// Waits for a process to exit, at most `limit` (None: as long as it
    /// takes); its exit status.
    async fn wait(
        &self,
        id: &str,
        exec_id: &str,
        limit: Option<Duration>,
    ) -> Result<u32, TaskError>;
    /// Forgets a process.
    async fn delete(&self, id: &str, exec_id: &str) -> Result<(), TaskError>;
    /// A container's state.
    async fn state(&self, id: &str) -> Result<TaskState, TaskError>;
    /// Creates (not starts) an exec process.
    async fn exec(&self, process: ExecProcess) -> Result<(), TaskError>;
    /// A container's cgroup metrics.
    async fn stats(&self, id: &str) -> Result<task::cgroups::metrics::Metrics, TaskError>;
    /// Applies new OCI `LinuxResources` (JSON) to a container.
    async fn update(&self, id: &str, resources: Vec<u8>) -> Result<(), TaskError>;
    /// Freezes (`paused`) or thaws a container's processes.
    async fn pause(&self, id: &str, paused: bool) -> Result<(), TaskError>;
}

/// A task client over the shim's ttrpc socket.
#[derive(Clone)]
pub struct TtrpcTask(pub task::TaskClient);

/// A call's context: its deadline, and the trace context of the current
/// span when it is sampled, so the shim records its spans under it.
fn ctx(limit: Option<Duration>) -> ttrpc::context::Context {
    let nanos = limit.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let mut ctx = ttrpc::context::with_timeout(nanos);
    if let Some(parent) = crate::telemetry::current_traceparent() {
        ctx.add(crio_contract::trace::TRACEPARENT.to_string(), parent);
    }
    ctx
}

#[async_trait::async_trait]
impl TaskClient for TtrpcTask {
    async fn create(&self, id: &str, bundle: &Path, terminal: bool) -> Result<(), TaskError> {
        let req = task::CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.display().to_string(),
            terminal,
            ..Default::default()
        };
        self.0.create(ctx(Some(CALL_TIMEOUT)), &req).await?;
        Ok(())
    }

    async fn start(&self, id: &str, exec_id: &str) -> Result<u32, TaskError> {
        let req = task::StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        Ok(self.0.start(ctx(Some(CALL_TIMEOUT)), &req).await?.pid)
    }

    async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), TaskError> {
        let req = task::KillRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        self.0.kill(ctx(Some(CALL_TIMEOUT)), &req).await?;
        Ok(())
    }

    async fn wait(
        &self,
        id: &str,
        exec_id: &str,
        limit: Option<Duration>,
    ) -> Result<u32, TaskError> {
        let req = task::WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        Ok(self.0.wait(ctx(limit), &req).await?.exit_status)
    }

    async fn delete(&self, id: &str, exec_id: &str) -> Result<(), TaskError> {
        let req = task::DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.0.delete(ctx(Some(CALL_TIMEOUT)), &req).await?;
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<TaskState, TaskError> {
        let req = task::StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let state = self.0.state(ctx(Some(CALL_TIMEOUT)), &req).await?;
        let status = match state.status.enum_value_or_default() {
            task::Status::CREATED => TaskStatus::Created,
            task::Status::RUNNING => TaskStatus::Running,
            task::Status::STOPPED => TaskStatus::Stopped,
            _ => TaskStatus::Unknown,
        };
        Ok(TaskState {
            status,
            pid: state.pid,
            exit_status: state.exit_status,
            exited_at: state
                .exited_at
                .as_ref()
                .map(crio_api::time::timestamp_to_nanos)
                .unwrap_or(0),
        })
    }

    async fn exec(&self, p: ExecProcess) -> Result<(), TaskError> {
        let any = task::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: p.process,
            ..Default::default()
        };
        let req = task::ExecProcessRequest {
            id: p.id,
            exec_id: p.exec_id,
            terminal: p.terminal,
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            spec: task::protobuf::MessageField::some(any),
            ..Default::default()
        };
        self.0.exec(ctx(Some(CALL_TIMEOUT)), &req).await?;
        Ok(())
    }

    async fn stats(&self, id: &str) -> Result<task::cgroups::metrics::Metrics, TaskError> {
        use task::protobuf::Message;
        let req = task::StatsRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let resp = self.0.stats(ctx(Some(CALL_TIMEOUT)), &req).await?;
        task::cgroups::metrics::Metrics::parse_from_bytes(&resp.stats.value)
            .map_err(|e| TaskError::Failed(format!("decode the shim's stats: {e}")))
    }

    async fn update(&self, id: &str, resources: Vec<u8>) -> Result<(), TaskError> {
        let any = task::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: resources,
            ..Default::default()
        };
        let req = task::UpdateTaskRequest {
            id: id.to_string(),
            resources: task::protobuf::MessageField::some(any),
            ..Default::default()
        };
        self.0.update(ctx(Some(CALL_TIMEOUT)), &req).await?;
        Ok(())
    }

    async fn pause(&self, id: &str, paused: bool) -> Result<(), TaskError> {
        let limit = ctx(Some(CALL_TIMEOUT));
        if paused {
            let req = task::PauseRequest {
                id: id.to_string(),
                ..Default::default()
            };
            self.0.pause(limit, &req).await?;
        } else {
            let req = task::ResumeRequest {
                id: id.to_string(),
                ..Default::default()
            };
            self.0.resume(limit, &req).await?;
        }
        Ok(())
    }
}
