//! The containerd task API over ttrpc: each call is dispatched to the
//! operation it names (`container`, `exec`, `metrics`), and its error
//! becomes a ttrpc status here and nowhere else.

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::TtrpcResult;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::api;
use containerd_shim::protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::{self, Code};

use crate::error::ShimError;
use crate::events::{Daemon, Events, timestamp};
use crate::runc::Runc;
use crate::runtime::Exit;
use crate::tasks::Tasks;

/// The task service of one pod's shim.
#[derive(Clone)]
pub struct TaskService {
    tasks: Arc<Tasks>,
    exit: Arc<ExitSignal>,
}

/// The ttrpc status of a failed operation.
pub(crate) fn status(e: ShimError) -> ttrpc::Error {
    let code = match &e {
        ShimError::ContainerNotFound(_)
        | ShimError::ExecNotFound { .. }
        | ShimError::CgroupNotFound(_) => Code::NOT_FOUND,
        ShimError::ContainerExists(_) | ShimError::ExecExists { .. } => Code::ALREADY_EXISTS,
        ShimError::ExecIdNotPlain(_)
        | ShimError::NoProcessSpec
        | ShimError::NoResources
        | ShimError::BadResources(_)
        | ShimError::BadSignal(_)
        | ShimError::Mount(_)
        | ShimError::Stdio { .. } => Code::INVALID_ARGUMENT,
        ShimError::NoCgroup => Code::FAILED_PRECONDITION,
        ShimError::RunRuntime { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            Code::DEADLINE_EXCEEDED
        }
        ShimError::Runtime { .. } | ShimError::Start { .. } => Code::UNKNOWN,
        ShimError::OpenLog { .. }
        | ShimError::RunRuntime { .. }
        | ShimError::NoPidFile(_)
        | ShimError::Monitor(_)
        | ShimError::ExitWatcherGone
        | ShimError::NoTerminal
        | ShimError::Encode(_)
        | ShimError::Serve { .. }
        | ShimError::Io { .. } => Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
}

/// The pid, exit status and time of a deleted process.
fn deleted((pid, exit): (u32, Exit)) -> api::DeleteResponse {
    api::DeleteResponse {
        pid,
        exit_status: exit.0,
        exited_at: timestamp(exit.1),
        ..Default::default()
    }
}

impl TaskService {
    /// A service running containers with the runtime the environment names
    /// and publishing its events to the daemon's endpoint (`TTRPC_ADDRESS`).
    pub fn new(namespace: String, exit: Arc<ExitSignal>) -> Self {
        let events = Events::new(namespace, Arc::new(Daemon::default()));
        let runc = Runc::from_env();
        let name = runc.name();
        let tasks = Tasks::new(
            Arc::new(crate::trace::Traced::new(runc, name)),
            crate::shim::socket_dir(),
            events,
        );
        Self::with_tasks(Arc::new(tasks), exit)
    }

    /// A service over `tasks`.
    pub fn with_tasks(tasks: Arc<Tasks>, exit: Arc<ExitSignal>) -> Self {
        Self { tasks, exit }
    }

    /// Runs operation `name` on container `id`, traced when the caller
    /// sent a sampled trace context; its error as a ttrpc status.
    async fn traced<T>(
        &self,
        ctx: &TtrpcContext,
        name: &str,
        id: &str,
        work: impl std::future::Future<Output = Result<T, ShimError>>,
    ) -> TtrpcResult<T> {
        crate::trace::call(ctx, &self.tasks.events, name, id, work)
            .await
            .map_err(status)
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        let created = self.tasks.create(req);
        let pid = self.traced(ctx, "create", &id, created).await?;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn exec(
        &self,
        ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        self.traced(ctx, "exec", &req.id, self.tasks.exec(&req))
            .await?;
        Ok(api::Empty::default())
    }

    async fn start(
        &self,
        ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let pid = if req.exec_id.is_empty() {
            if let Some(parent) = crate::trace::parent_of(ctx) {
                // Its exit and OOM kills are reported under this trace.
                self.tasks.events.follow(&req.id, parent);
            }
            self.traced(ctx, "start", &req.id, self.tasks.start(&req.id))
                .await
        } else {
            let started = self.tasks.start_exec(&req.id, &req.exec_id);
            self.traced(ctx, "start exec", &req.id, started).await
        };
        Ok(api::StartResponse {
            pid: pid?,
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let c = self.tasks.container(&req.id).map_err(status)?;
        let status = *c.status.lock();
        let exit = *c.exited.borrow();
        Ok(api::StateResponse {
            id: req.id,
            bundle: c.bundle.display().to_string(),
            pid: c.pid,
            status: EnumOrUnknown::new(status),
            exit_status: exit.map(|e| e.0).unwrap_or(0),
            exited_at: exit.map(|e| timestamp(e.1)).unwrap_or_default(),
            ..Default::default()
        })
    }

    async fn kill(&self, ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let killed = async {
            if req.exec_id.is_empty() {
                self.tasks.kill(&req.id, req.signal, req.all).await
            } else {
                self.tasks.kill_exec(&req.id, &req.exec_id, req.signal)
            }
        };
        self.traced(ctx, "kill", &req.id, killed).await?;
        Ok(api::Empty::default())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let exit = self
            .tasks
            .wait(&req.id, &req.exec_id)
            .await
            .map_err(status)?;
        Ok(api::WaitResponse {
            exit_status: exit.0,
            exited_at: timestamp(exit.1),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let deleting = async {
            if req.exec_id.is_empty() {
                self.tasks.delete(&req.id).await
            } else {
                self.tasks.delete_exec(&req.id, &req.exec_id).await
            }
        };
        self.traced(ctx, "delete", &req.id, deleting)
            .await
            .map(deleted)
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let pids = self.tasks.pids(&req.id).await.map_err(status)?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = api::ProcessInfo::new();
                info.pid = pid;
                info
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.tasks.set_paused(&req.id, true).await.map_err(status)?;
        Ok(api::Empty::default())
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        self.tasks
            .set_paused(&req.id, false)
            .await
            .map_err(status)?;
        Ok(api::Empty::default())
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let resources = req.resources.as_ref().map(|r| r.value.as_slice());
        self.tasks
            .update(&req.id, resources)
            .await
            .map_err(status)?;
        Ok(api::Empty::default())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let stats = self.tasks.stats(&req.id).await.map_err(status)?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let io = self
            .tasks
            .process_io(&req.id, &req.exec_id)
            .map_err(status)?;
        let (w, h) = (
            req.width.min(u16::MAX.into()),
            req.height.min(u16::MAX.into()),
        );
        io.resize(w as u16, h as u16)
            .map_err(|e| status(ShimError::io("resize the terminal", e)))?;
        Ok(api::Empty::default())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        if req.stdin {
            let io = self
                .tasks
                .process_io(&req.id, &req.exec_id)
                .map_err(status)?;
            io.close_stdin().await;
        }
        Ok(api::Empty::default())
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.tasks.container(&req.id).map(|c| c.pid).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        if self.tasks.is_empty() || req.now {
            self.exit.signal();
        }
        Ok(api::Empty::default())
    }
}
