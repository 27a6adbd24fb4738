//! The containerd task API over the OCI runtime: create, start, state, kill,
//! wait, delete, pids, connect, shutdown. The shim owns each container's
//! stdio (written to the CRI log file) and records every exit in the bundle
//! (`exit`: code and time) before it publishes TaskExit.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use containerd_shim::TtrpcResult;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::asynchronous::monitor::{monitor_subscribe, monitor_unsubscribe};
use containerd_shim::monitor::Topic;
use containerd_shim::protos::events::task::{TaskExit, TaskOOM, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::{api, topics};
use containerd_shim::publisher::RemotePublisher;
use tokio::sync::watch;

use crate::log::{LogFile, copy};
use crate::runc::Runc;

/// The annotation that carries the CRI log path, as CRI-O names it.
pub const LOG_PATH_ANNOTATION: &str = "io.kubernetes.cri-o.LogPath";
/// The file in the bundle that records the exit: `CODE NANOS`.
pub const EXIT_FILE: &str = "exit";

/// The file in the bundle that marks an OOM kill.
pub const OOM_FILE: &str = "oom";

/// An exit: code and time in nanoseconds since the epoch.
type Exit = (u32, i64);

struct Container {
    bundle: PathBuf,
    pid: u32,
    status: Mutex<api::Status>,
    exited: watch::Receiver<Option<Exit>>,
}

/// Container ID and exec ID.
type ExecKey = (String, String);

/// A process started in a running container (`runc exec`).
struct ExecProcess {
    process_file: PathBuf,
    stdout: String,
    stderr: String,
    pid: Mutex<u32>,
    exited: watch::Receiver<Option<Exit>>,
    exit_tx: watch::Sender<Option<Exit>>,
}

/// The task service of one pod's shim.
#[derive(Clone)]
pub struct TaskService {
    runc: Runc,
    namespace: String,
    containers: Arc<Mutex<HashMap<String, Arc<Container>>>>,
    execs: Arc<Mutex<HashMap<ExecKey, Arc<ExecProcess>>>>,
    publisher: Arc<RemotePublisher>,
    exit: Arc<ExitSignal>,
}

fn error(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn timestamp(nanos: i64) -> MessageField<Timestamp> {
    let mut ts = Timestamp::new();
    ts.seconds = nanos.div_euclid(1_000_000_000);
    ts.nanos = nanos.rem_euclid(1_000_000_000) as i32;
    MessageField::some(ts)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Writes `bundle/exit` atomically.
fn record_exit(bundle: &Path, exit: Exit) -> std::io::Result<()> {
    let tmp = bundle.join(".exit.tmp");
    std::fs::write(&tmp, format!("{} {}\n", exit.0, exit.1))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, bundle.join(EXIT_FILE))
}

/// The log path a bundle's config.json names, if any.
fn log_path(bundle: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_str(&text).ok()?;
    spec["annotations"][LOG_PATH_ANNOTATION]
        .as_str()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

impl TaskService {
    /// A service publishing its events through `publisher`.
    pub fn new(namespace: String, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Self {
        Self {
            runc: Runc::from_env(),
            namespace,
            containers: Arc::default(),
            execs: Arc::default(),
            publisher: Arc::new(publisher),
            exit,
        }
    }

    fn get(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| error(Code::NOT_FOUND, format!("container {id} not found")))
    }

    fn exec_process(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<ExecProcess>> {
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(id.to_string(), exec_id.to_string()))
            .cloned()
            .ok_or_else(|| {
                error(
                    Code::NOT_FOUND,
                    format!("exec {exec_id} of container {id} not found"),
                )
            })
    }

    /// Starts an exec process: its stdout and stderr are the files named in
    /// the exec request; its exit comes from the reaper like the init's.
    async fn start_exec(&self, id: &str, exec_id: &str) -> TtrpcResult<u32> {
        let c = self.get(id)?;
        let e = self.exec_process(id, exec_id)?;
        let open = |path: &str| -> TtrpcResult<OwnedFd> {
            let target = if path.is_empty() { "/dev/null" } else { path };
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(target)
                .map(OwnedFd::from)
                .map_err(|err| error(Code::INVALID_ARGUMENT, format!("open {target}: {err}")))
        };
        let stdio = (open(&e.stdout)?, open(&e.stderr)?);
        let sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|err| error(Code::INTERNAL, err.to_string()))?;
        let pid_file = c.bundle.join(format!("exec-{exec_id}.pid"));
        let process = e.process_file.display().to_string();
        let pid_path = pid_file.display().to_string();
        let args = [
            "exec",
            "--process",
            process.as_str(),
            "--pid-file",
            pid_path.as_str(),
            "--detach",
            id,
        ];
        let outcome = self
            .runc
            .run(&args, Some(stdio))
            .await
            .map_err(|err| error(Code::INTERNAL, err.to_string()))?;
        if outcome.code != 0 {
            let _ = monitor_unsubscribe(sub.id).await;
            return Err(error(
                Code::UNKNOWN,
                format!(
                    "exec in container {id}: the runtime exited with {}",
                    outcome.code
                ),
            ));
        }
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| error(Code::INTERNAL, "runtime wrote no exec pid file"))?;
        let _ = std::fs::remove_file(&pid_file);
        *e.pid.lock().unwrap_or_else(|p| p.into_inner()) = pid;
        let exec = e.clone();
        tokio::spawn(async move {
            let code = crate::runc::exit_of(sub, pid as i32).await;
            let _ = exec.exit_tx.send(Some((code as u32, now_nanos())));
        });
        Ok(pid)
    }

    async fn runtime(&self, what: &str, args: &[&str]) -> TtrpcResult<()> {
        let out = self
            .runc
            .run(args, None)
            .await
            .map_err(|e| error(Code::INTERNAL, format!("{what}: run runtime: {e}")))?;
        if out.code != 0 {
            return Err(error(
                Code::UNKNOWN,
                format!("{what}: {}", out.stderr.trim()),
            ));
        }
        Ok(())
    }

    async fn publish(
        &self,
        topic: &str,
        event: Box<dyn containerd_shim::protos::protobuf::MessageDyn>,
    ) {
        // Without a listener this fails fast: the exit file is the record.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.publisher
                .publish(Default::default(), topic, &self.namespace, event),
        )
        .await;
    }
}

fn pipe() -> TtrpcResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| error(Code::INTERNAL, format!("pipe: {e}")))
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if req.terminal {
            return Err(error(
                Code::UNIMPLEMENTED,
                "terminal containers are not supported by this shim yet",
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let log =
            match log_path(&bundle) {
                Some(p) => Some(LogFile::open(p.clone()).await.map_err(|e| {
                    error(Code::INTERNAL, format!("open log {}: {e}", p.display()))
                })?),
                None => None,
            };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        // Subscribed before the container exists, so no exit is missed.
        let sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        let pid_file = bundle.join("init.pid");
        let runtime_log = bundle.join("runtime.log");
        let args = [
            "--log",
            runtime_log.to_str().unwrap_or_default(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            req.bundle.as_str(),
            "--pid-file",
            pid_file.to_str().unwrap_or_default(),
            req.id.as_str(),
        ];
        let outcome = self.runc.run(&args, Some((out_w, err_w))).await;
        let failed = match &outcome {
            Ok(o) if o.code == 0 => None,
            Ok(_) => Some(runtime_error(&runtime_log)),
            Err(e) => Some(e.to_string()),
        };
        if let Some(msg) = failed {
            let _ = monitor_unsubscribe(sub.id).await;
            return Err(error(
                Code::UNKNOWN,
                format!("create container {}: {msg}", req.id),
            ));
        }
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| error(Code::INTERNAL, "runtime wrote no pid file"))?;

        let mut copiers = Vec::new();
        for (fd, stream) in [(out_r, "stdout"), (err_r, "stderr")] {
            let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| error(Code::INTERNAL, format!("{stream} pipe: {e}")))?;
            copiers.push(match &log {
                Some(log) => tokio::spawn(copy(reader, stream, log.clone())),
                None => tokio::spawn(async move {
                    let mut sink = tokio::io::sink();
                    let mut reader = reader;
                    let _ = tokio::io::copy(&mut reader, &mut sink).await;
                }),
            });
        }
        let (tx, rx) = watch::channel(None);
        let container = Arc::new(Container {
            bundle: bundle.clone(),
            pid,
            status: Mutex::new(api::Status::CREATED),
            exited: rx,
        });
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req.id.clone(), container.clone());

        let service = self.clone();
        let id = req.id.clone();
        tokio::spawn(async move {
            let code = crate::runc::exit_of(sub, pid as i32).await;
            // Let the copiers drain what the container wrote last.
            for c in copiers {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), c).await;
            }
            let exit = (code as u32, now_nanos());
            // Read before the runtime deletes the cgroup.
            let oom = crate::oom::memory_cgroup(&container.bundle, Path::new("/sys/fs/cgroup"))
                .is_some_and(|cg| crate::oom::oom_kills(&cg) > 0);
            if oom {
                let _ = std::fs::write(container.bundle.join(OOM_FILE), "");
                let event = TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                };
                service
                    .publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(event))
                    .await;
            }
            if let Err(e) = record_exit(&container.bundle, exit) {
                eprintln!("record exit of {id}: {e}");
            }
            *container.status.lock().unwrap_or_else(|p| p.into_inner()) = api::Status::STOPPED;
            let _ = tx.send(Some(exit));
            let event = TaskExit {
                container_id: id.clone(),
                id: id.clone(),
                pid,
                exit_status: exit.0,
                exited_at: timestamp(exit.1),
                ..Default::default()
            };
            service
                .publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event))
                .await;
        });
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        if req.terminal {
            return Err(error(
                Code::UNIMPLEMENTED,
                "terminal exec is not supported by this shim yet",
            ));
        }
        let spec = req
            .spec
            .as_ref()
            .ok_or_else(|| error(Code::INVALID_ARGUMENT, "exec without a process spec"))?;
        let safe = !req.exec_id.is_empty()
            && req
                .exec_id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !safe {
            return Err(error(
                Code::INVALID_ARGUMENT,
                format!("exec id {:?} is not a plain name", req.exec_id),
            ));
        }
        let process_file = c.bundle.join(format!("exec-{}.json", req.exec_id));
        std::fs::write(&process_file, &spec.value)
            .map_err(|e| error(Code::INTERNAL, format!("write exec spec: {e}")))?;
        let (exit_tx, exited) = watch::channel(None);
        let exec = ExecProcess {
            process_file,
            stdout: req.stdout,
            stderr: req.stderr,
            pid: Mutex::new(0),
            exited,
            exit_tx,
        };
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((req.id, req.exec_id), Arc::new(exec));
        Ok(api::Empty::default())
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        if !req.exec_id.is_empty() {
            let pid = self.start_exec(&req.id, &req.exec_id).await?;
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        let c = self.get(&req.id)?;
        self.runtime(&format!("start container {}", req.id), &["start", &req.id])
            .await?;
        {
            let mut status = c.status.lock().unwrap_or_else(|p| p.into_inner());
            if *status == api::Status::CREATED {
                *status = api::Status::RUNNING;
            }
        }
        let event = TaskStart {
            container_id: req.id.clone(),
            pid: c.pid,
            ..Default::default()
        };
        self.publish(topics::TASK_START_EVENT_TOPIC, Box::new(event))
            .await;
        Ok(api::StartResponse {
            pid: c.pid,
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let c = self.get(&req.id)?;
        let status = *c.status.lock().unwrap_or_else(|p| p.into_inner());
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

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        if !req.exec_id.is_empty() {
            let e = self.exec_process(&req.id, &req.exec_id)?;
            let pid = *e.pid.lock().unwrap_or_else(|p| p.into_inner());
            if pid > 0 && e.exited.borrow().is_none() {
                let signal = nix::sys::signal::Signal::try_from(req.signal as i32)
                    .map_err(|_| error(Code::INVALID_ARGUMENT, format!("signal {}", req.signal)))?;
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
            }
            return Ok(api::Empty::default());
        }
        let c = self.get(&req.id)?;
        if c.exited.borrow().is_some() {
            return Ok(api::Empty::default());
        }
        let signal = req.signal.to_string();
        let mut args = vec!["kill"];
        if req.all {
            args.push("--all");
        }
        args.extend([req.id.as_str(), signal.as_str()]);
        match self
            .runtime(&format!("kill container {}", req.id), &args)
            .await
        {
            // Gone between the check and the kill: not an error.
            Err(_) if c.exited.borrow().is_some() => Ok(api::Empty::default()),
            other => other.map(|()| api::Empty::default()),
        }
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let mut rx = if req.exec_id.is_empty() {
            self.get(&req.id)?.exited.clone()
        } else {
            self.exec_process(&req.id, &req.exec_id)?.exited.clone()
        };
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| error(Code::INTERNAL, "exit watcher gone"))?
            .unwrap_or((255, 0));
        Ok(api::WaitResponse {
            exit_status: exit.0,
            exited_at: timestamp(exit.1),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let e = self.exec_process(&req.id, &req.exec_id)?;
            let exit = *e.exited.borrow();
            let _ = std::fs::remove_file(&e.process_file);
            self.execs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(req.id, req.exec_id));
            return Ok(api::DeleteResponse {
                pid: *e.pid.lock().unwrap_or_else(|p| p.into_inner()),
                exit_status: exit.map(|x| x.0).unwrap_or(137),
                exited_at: timestamp(exit.map(|x| x.1).unwrap_or_else(now_nanos)),
                ..Default::default()
            });
        }
        let c = self.get(&req.id)?;
        self.runtime(
            &format!("delete container {}", req.id),
            &["delete", "--force", &req.id],
        )
        .await?;
        let exit = *c.exited.borrow();
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req.id);
        Ok(api::DeleteResponse {
            pid: c.pid,
            exit_status: exit.map(|e| e.0).unwrap_or(137),
            exited_at: timestamp(exit.map(|e| e.1).unwrap_or_else(now_nanos)),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let c = self.get(&req.id)?;
        let mut info = api::ProcessInfo::new();
        info.pid = c.pid;
        Ok(api::PidsResponse {
            processes: vec![info],
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.get(&req.id).map(|c| c.pid).unwrap_or(0);
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
        let empty = self
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if empty || req.now {
            self.exit.signal();
        }
        Ok(api::Empty::default())
    }
}

/// The last error the runtime logged (its JSON log), or a generic message.
fn runtime_error(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["level"] == "error")
                .filter_map(|v| v["msg"].as_str().map(String::from))
                .next_back()
        })
        .unwrap_or_else(|| "the runtime failed without a message".into())
}
