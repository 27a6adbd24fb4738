//! The containerd task API over the OCI runtime: create, start, state, kill,
//! wait, delete, exec, pids, pause/resume, update, stats, resize, close_io,
//! connect, shutdown. The shim owns each process's stdio (`io`) and records
//! every container exit in the bundle (`exit`: code and time) before it
//! publishes TaskExit.

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
use containerd_shim::protos::cgroups::metrics::Metrics;
use containerd_shim::protos::events::task::{
    TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{EnumOrUnknown, Message, MessageDyn, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::EventsClient;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::{api, topics};
use tokio::sync::watch;

use crate::io::{IoOptions, ProcessIo};
use crate::log::LogFile;
use crate::runc::Runc;
use crio_attach::channel;
use crio_contract::EXEC_SYNC_OUTPUT_MAX;
use crio_contract::annotations;
use crio_contract::bundle::{EXIT_FILE, OOM_FILE, exit_record};

/// The type URL of the stats the shim returns (containerd's cgroup v1
/// metrics, whatever the host's cgroup version).
pub const METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";

/// An exit: code and time in nanoseconds since the epoch.
type Exit = (u32, i64);

struct Container {
    bundle: PathBuf,
    pid: u32,
    status: Mutex<api::Status>,
    exited: watch::Receiver<Option<Exit>>,
    io: Arc<ProcessIo>,
    cgroup: Option<PathBuf>,
    /// Whether the shim mounted the rootfs (from the request's mounts).
    mounted_rootfs: bool,
}

/// Container ID and exec ID.
type ExecKey = (String, String);

/// A process started in a running container (`runc exec`).
struct ExecProcess {
    process_file: PathBuf,
    terminal: bool,
    io: Arc<ProcessIo>,
    pid: Mutex<u32>,
    exited: watch::Receiver<Option<Exit>>,
    exit_tx: watch::Sender<Option<Exit>>,
}

/// The task service of one pod's shim.
#[derive(Clone)]
pub struct TaskService {
    runc: Runc,
    socket_dir: PathBuf,
    namespace: String,
    containers: Arc<Mutex<HashMap<String, Arc<Container>>>>,
    execs: Arc<Mutex<HashMap<ExecKey, Arc<ExecProcess>>>>,
    events: Arc<tokio::sync::Mutex<Option<EventsClient>>>,
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
    std::fs::write(&tmp, exit_record(exit.0, exit.1))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, bundle.join(EXIT_FILE))
}

/// What the shim reads from a bundle's config.json.
#[derive(Default)]
struct BundleInfo {
    log_path: Option<PathBuf>,
    log_directory: Option<PathBuf>,
    log_size_max: Option<u64>,
    stdin: bool,
    stdin_once: bool,
    cgroup: Option<PathBuf>,
}

fn bundle_info(bundle: &Path) -> BundleInfo {
    let Some(spec) = std::fs::read_to_string(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return BundleInfo::default();
    };
    let annotation = |key: &str| spec["annotations"][key].as_str().unwrap_or_default();
    BundleInfo {
        log_path: Some(annotation(annotations::LOG_PATH))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        log_directory: Some(annotation(annotations::LOG_DIRECTORY))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        log_size_max: annotation(annotations::LOG_SIZE_MAX)
            .parse::<u64>()
            .ok()
            .filter(|max| *max > 0),
        stdin: annotation(annotations::STDIN) == "true",
        stdin_once: annotation(annotations::STDIN_ONCE) == "true",
        cgroup: spec["linux"]["cgroupsPath"]
            .as_str()
            .filter(|p| !p.is_empty())
            .map(crio_cgroups::cgroupfs_path),
    }
}

/// Where an exec's stdin comes from: an absolute path is a FIFO (as ctr
/// passes), any other non-empty value means attach clients. Output into
/// regular files (the daemon's ExecSync) stops at the cap the daemon reads.
fn exec_io_options(req: &api::ExecProcessRequest) -> IoOptions {
    let fifo = req.stdin.starts_with('/');
    IoOptions {
        log: None,
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        stdin_fifo: if fifo {
            req.stdin.clone()
        } else {
            String::new()
        },
        stdin: !req.stdin.is_empty() && !fifo,
        stdin_once: true,
        file_max: Some(EXEC_SYNC_OUTPUT_MAX),
    }
}

/// Runs a runtime command that hands a terminal master back on a console
/// socket; returns the runtime's outcome and the master.
async fn with_console<F, Fut>(
    socket: &Path,
    run: F,
) -> Result<(crate::runc::Outcome, Option<OwnedFd>), String>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<crate::runc::Outcome>>,
{
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| format!("console socket {}: {e}", socket.display()))?;
    let accept = tokio::spawn(async move { crate::io::receive_console(&listener).await });
    let outcome = run(socket.display().to_string()).await;
    let _ = std::fs::remove_file(socket);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            accept.abort();
            return Err(e.to_string());
        }
    };
    if outcome.code != 0 {
        accept.abort();
        return Ok((outcome, None));
    }
    match tokio::time::timeout(std::time::Duration::from_secs(5), accept).await {
        Ok(Ok(Ok(fd))) => Ok((outcome, Some(fd))),
        Ok(Ok(Err(e))) => Err(format!("receive terminal: {e}")),
        _ => Err("the runtime sent no terminal".into()),
    }
}

impl TaskService {
    /// A service publishing its events to the daemon's endpoint
    /// (`TTRPC_ADDRESS`).
    pub fn new(namespace: String, exit: Arc<ExitSignal>) -> Self {
        Self {
            runc: Runc::from_env(),
            socket_dir: crate::shim::socket_dir(),
            namespace,
            containers: Arc::default(),
            execs: Arc::default(),
            events: Arc::default(),
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

    /// Starts an exec process with its stdio set up at `exec`; its exit
    /// comes from the reaper like the init's.
    async fn start_exec(&self, id: &str, exec_id: &str) -> TtrpcResult<u32> {
        let c = self.get(id)?;
        let e = self.exec_process(id, exec_id)?;
        let sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|err| error(Code::INTERNAL, err.to_string()))?;
        let pid_file = c.bundle.join(format!("exec-{exec_id}.pid"));
        let process = e.process_file.display().to_string();
        let pid_path = pid_file.display().to_string();
        let mut args = vec![
            "exec".to_string(),
            "--process".into(),
            process,
            "--pid-file".into(),
            pid_path,
            "--detach".into(),
        ];
        let (outcome, outputs) = if e.terminal {
            let socket = self.socket_dir.join(format!("{}.console", short(exec_id)));
            let runc = self.runc.clone();
            let run = |console: String| async move {
                args.extend(["--console-socket".into(), console, id.to_string()]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                runc.run(&args, None).await
            };
            let (outcome, master) = with_console(&socket, run)
                .await
                .map_err(|err| error(Code::INTERNAL, err))?;
            let outputs = match master {
                Some(m) => vec![(e.io.terminal(m).await.map_err(internal)?, channel::STDOUT)],
                None => Vec::new(),
            };
            (outcome, outputs)
        } else {
            let (child, [out, err]) = e.io.pipes().await.map_err(internal)?;
            args.push(id.to_string());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let outcome = self.runc.run(&args, Some(child)).await.map_err(internal)?;
            (
                outcome,
                vec![(out, channel::STDOUT), (err, channel::STDERR)],
            )
        };
        if outcome.code != 0 {
            let _ = monitor_unsubscribe(sub.id).await;
            let detail = outcome.stderr.trim();
            return Err(error(
                Code::UNKNOWN,
                format!(
                    "exec in container {id}: the runtime exited with {}{}{detail}",
                    outcome.code,
                    if detail.is_empty() { "" } else { ": " },
                ),
            ));
        }
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| error(Code::INTERNAL, "runtime wrote no exec pid file"))?;
        let _ = std::fs::remove_file(&pid_file);
        *e.pid.lock().unwrap_or_else(|p| p.into_inner()) = pid;
        let pumps = spawn_pumps(&e.io, outputs);
        let exec = e.clone();
        tokio::spawn(async move {
            let code = crate::runc::exit_of(sub, pid as i32).await;
            drain(pumps).await;
            exec.io.finish(code).await;
            let _ = exec.exit_tx.send(Some((code as u32, now_nanos())));
        });
        Ok(pid)
    }

    /// The container's statistics as containerd's cgroup v1 metrics.
    fn metrics(&self, c: &Container) -> TtrpcResult<Metrics> {
        let cgroup = c
            .cgroup
            .as_ref()
            .ok_or_else(|| error(Code::FAILED_PRECONDITION, "the container has no cgroup"))?;
        let s = crio_cgroups::read(Path::new("/sys/fs/cgroup"), cgroup).ok_or_else(|| {
            error(
                Code::NOT_FOUND,
                format!("cgroup {} not found", cgroup.display()),
            )
        })?;
        let mut m = Metrics::new();
        let cpu = m.cpu.mut_or_insert_default();
        let usage = cpu.usage.mut_or_insert_default();
        usage.total = s.cpu_usage_ns;
        usage.user = s.cpu_user_ns;
        usage.kernel = s.cpu_system_ns;
        let memory = m.memory.mut_or_insert_default();
        memory.rss = s.memory_rss;
        memory.total_rss = s.memory_rss;
        memory.total_inactive_file = s.memory_usage - s.memory_working_set;
        memory.pg_fault = s.page_faults;
        memory.pg_maj_fault = s.major_page_faults;
        let entry = memory.usage.mut_or_insert_default();
        entry.usage = s.memory_usage;
        entry.limit = s.memory_limit;
        let pids = m.pids.mut_or_insert_default();
        pids.current = s.pids;
        pids.limit = s.pids_limit;
        Ok(m)
    }

    /// Creates a container whose rootfs is in place.
    async fn create_mounted(
        &self,
        req: api::CreateTaskRequest,
        bundle: PathBuf,
        info: BundleInfo,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let log = match &info.log_path {
            Some(p) => Some(
                LogFile::open(p, info.log_directory.as_deref(), info.log_size_max)
                    .await
                    .map_err(|e| error(Code::INTERNAL, format!("open log {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let io = ProcessIo::new(IoOptions {
            log,
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            stdin_fifo: req.stdin.clone(),
            stdin: info.stdin,
            stdin_once: info.stdin_once,
            file_max: None,
        })
        .await
        .map_err(|e| error(Code::INVALID_ARGUMENT, format!("container stdio: {e}")))?;
        // Subscribed before the container exists, so no exit is missed.
        let sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        let pid_file = bundle.join("init.pid");
        let runtime_log = bundle.join("runtime.log");
        let mut args: Vec<String> = [
            "--log",
            runtime_log.to_str().unwrap_or_default(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            req.bundle.as_str(),
            "--pid-file",
            pid_file.to_str().unwrap_or_default(),
        ]
        .map(String::from)
        .into();
        let outcome = if req.terminal {
            let socket = self.socket_dir.join(format!("{}.console", short(&req.id)));
            let runc = self.runc.clone();
            let id = req.id.clone();
            let run = |console: String| async move {
                args.extend(["--console-socket".into(), console, id]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                runc.run(&args, None).await
            };
            match with_console(&socket, run).await {
                Ok((o, Some(master))) => match io.terminal(master).await {
                    Ok(reader) => Ok((o, vec![(reader, channel::STDOUT)])),
                    Err(e) => Err(e.to_string()),
                },
                Ok((o, None)) => Ok((o, Vec::new())),
                Err(e) => Err(e),
            }
        } else {
            match io.pipes().await {
                Ok((child, [out, err])) => {
                    args.push(req.id.clone());
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    self.runc
                        .run(&args, Some(child))
                        .await
                        .map(|o| (o, vec![(out, channel::STDOUT), (err, channel::STDERR)]))
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let failed = match &outcome {
            Ok((o, _)) if o.code == 0 => None,
            Ok(_) => Some(runtime_error(&runtime_log)),
            Err(e) => Some(e.clone()),
        };
        let outputs = match (failed, outcome) {
            (None, Ok((_, outputs))) => outputs,
            (msg, _) => {
                let _ = monitor_unsubscribe(sub.id).await;
                return Err(error(
                    Code::UNKNOWN,
                    format!("create container {}: {}", req.id, msg.unwrap_or_default()),
                ));
            }
        };
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| error(Code::INTERNAL, "runtime wrote no pid file"))?;

        let pumps = spawn_pumps(&io, outputs);
        let (tx, rx) = watch::channel(None);
        let attach = crio_attach::attach_path(&self.socket_dir, &req.id, "");
        io.clone()
            .serve_attach(attach, rx.clone())
            .await
            .map_err(|e| error(Code::INTERNAL, format!("attach socket: {e}")))?;
        let container = Arc::new(Container {
            bundle: bundle.clone(),
            pid,
            status: Mutex::new(api::Status::CREATED),
            exited: rx,
            io,
            cgroup: info.cgroup,
            mounted_rootfs: !req.rootfs.is_empty(),
        });
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req.id.clone(), container.clone());

        let service = self.clone();
        let id = req.id.clone();
        let (running_tx, running) = watch::channel(false);
        if let Some(cg) = crate::oom::memory_cgroup(&bundle, Path::new("/sys/fs/cgroup")) {
            let (oom_tx, mut ooms) = tokio::sync::mpsc::channel(4);
            tokio::spawn(crate::oom::watch(cg, running, oom_tx));
            let service = service.clone();
            let (id, bundle) = (id.clone(), bundle.clone());
            tokio::spawn(async move {
                while ooms.recv().await.is_some() {
                    service.oom_killed(&id, &bundle).await;
                }
            });
        }
        tokio::spawn(async move {
            let code = crate::runc::exit_of(sub, pid as i32).await;
            let _ = running_tx.send(true);
            // Let the pumps drain what the container wrote last.
            drain(pumps).await;
            container.io.finish(code).await;
            let exit = (code as u32, now_nanos());
            // Read before the runtime deletes the cgroup.
            let oom = crate::oom::memory_cgroup(&container.bundle, Path::new("/sys/fs/cgroup"))
                .is_some_and(|cg| crate::oom::oom_kills(&cg) > 0);
            if oom && !container.bundle.join(OOM_FILE).exists() {
                service.oom_killed(&id, &container.bundle).await;
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
                .publish(topics::TASK_EXIT_EVENT_TOPIC, "TaskExit", &event)
                .await;
        });
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Records an OOM kill in the bundle and publishes TaskOOM.
    async fn oom_killed(&self, id: &str, bundle: &Path) {
        let _ = std::fs::write(bundle.join(OOM_FILE), "");
        let event = TaskOOM {
            container_id: id.to_string(),
            ..Default::default()
        };
        self.publish(topics::TASK_OOM_EVENT_TOPIC, "TaskOOM", &event)
            .await;
    }

    fn process_io(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<ProcessIo>> {
        if exec_id.is_empty() {
            Ok(self.get(id)?.io.clone())
        } else {
            Ok(self.exec_process(id, exec_id)?.io.clone())
        }
    }

    async fn set_paused(&self, id: &str, paused: bool) -> TtrpcResult<api::Empty> {
        let c = self.get(id)?;
        let (verb, status, topic): (&str, _, _) = if paused {
            (
                "pause",
                api::Status::PAUSED,
                topics::TASK_PAUSED_EVENT_TOPIC,
            )
        } else {
            (
                "resume",
                api::Status::RUNNING,
                topics::TASK_RESUMED_EVENT_TOPIC,
            )
        };
        self.runtime(&format!("{verb} container {id}"), &[verb, id])
            .await?;
        *c.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
        if paused {
            let event = TaskPaused {
                container_id: id.to_string(),
                ..Default::default()
            };
            self.publish(topic, "TaskPaused", &event).await;
        } else {
            let event = TaskResumed {
                container_id: id.to_string(),
                ..Default::default()
            };
            self.publish(topic, "TaskResumed", &event).await;
        }
        Ok(api::Empty::default())
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

    /// Publishes `event` (protobuf type `containerd.events.<kind>`) on
    /// `topic`. Without a listener this fails fast and is dropped: the exit
    /// file is the record. The message is packed by name, which keeps
    /// protobuf's reflection tables out of the shim's memory.
    async fn publish(&self, topic: &str, kind: &str, event: &dyn MessageDyn) {
        let Ok(value) = event.write_to_bytes_dyn() else {
            return;
        };
        let mut any = Any::new();
        any.type_url = format!("containerd.events.{kind}");
        any.value = value;
        let mut envelope = Envelope::new();
        envelope.timestamp = timestamp(now_nanos());
        envelope.namespace = self.namespace.clone();
        envelope.topic = topic.to_string();
        envelope.event = MessageField::some(any);
        let req = ForwardRequest {
            envelope: MessageField::some(envelope),
            ..Default::default()
        };
        let send = async {
            let mut events = self.events.lock().await;
            if events.is_none() {
                let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
                let address = if address.contains("://") {
                    address
                } else {
                    format!("unix://{address}")
                };
                let client = ttrpc::asynchronous::Client::connect(&address).await.ok()?;
                *events = Some(EventsClient::new(client));
            }
            let ctx = ttrpc::context::with_timeout(1_000_000_000);
            if events.as_ref()?.forward(ctx, &req).await.is_err() {
                // Reconnect next time.
                *events = None;
            }
            Some(())
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send).await;
    }
}

fn internal(e: impl std::fmt::Display) -> ttrpc::Error {
    error(Code::INTERNAL, e.to_string())
}

/// The first 32 characters of an id, for short socket names.
fn short(id: &str) -> String {
    id.chars().take(32).collect()
}

/// Starts copying each output of a process to its destinations.
fn spawn_pumps(
    io: &Arc<ProcessIo>,
    outputs: Vec<(OwnedFd, u8)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    outputs
        .into_iter()
        .map(|(fd, ch)| tokio::spawn(io.clone().pump(fd, ch)))
        .collect()
}

/// Waits (a little) for the pumps to copy what a process wrote last: a
/// child that inherited the output may keep it open for longer.
async fn drain(pumps: Vec<tokio::task::JoinHandle<()>>) {
    for p in pumps {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p).await;
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let bundle = PathBuf::from(&req.bundle);
        let info = bundle_info(&bundle);
        let mounts: Vec<crate::mount::RootfsMount<'_>> = req
            .rootfs
            .iter()
            .map(|m| crate::mount::RootfsMount {
                kind: &m.type_,
                source: &m.source,
                options: &m.options,
            })
            .collect();
        crate::mount::mount_rootfs(&bundle, &mounts)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e))?;
        let mounted_rootfs = !mounts.is_empty();
        let created = self.create_mounted(req, bundle.clone(), info).await;
        if created.is_err() && mounted_rootfs {
            crate::mount::unmount_rootfs(&bundle);
        }
        created
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        let spec = req
            .spec
            .as_ref()
            .ok_or_else(|| error(Code::INVALID_ARGUMENT, "exec without a process spec"))?;
        let safe = !req.exec_id.is_empty()
            && req.exec_id.len() <= 64
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
        let key = (req.id.clone(), req.exec_id.clone());
        if self
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
        {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("exec {} of container {} exists", req.exec_id, req.id),
            ));
        }
        let process_file = c.bundle.join(format!("exec-{}.json", req.exec_id));
        std::fs::write(&process_file, &spec.value)
            .map_err(|e| error(Code::INTERNAL, format!("write exec spec: {e}")))?;
        let io = ProcessIo::new(exec_io_options(&req))
            .await
            .map_err(|e| error(Code::INVALID_ARGUMENT, format!("exec stdio: {e}")))?;
        let (exit_tx, exited) = watch::channel(None);
        let attach = crio_attach::attach_path(&self.socket_dir, &req.id, &req.exec_id);
        io.clone()
            .serve_attach(attach, exited.clone())
            .await
            .map_err(|e| error(Code::INTERNAL, format!("attach socket: {e}")))?;
        let exec = ExecProcess {
            process_file,
            terminal: req.terminal,
            io,
            pid: Mutex::new(0),
            exited,
            exit_tx,
        };
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(exec));
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
        let what = format!("start container {}", req.id);
        match self.runc.exec_fifo(&req.id) {
            // runc: released here, one runc process less per container.
            Some(fifo) => crate::runc::release_exec_fifo(&fifo, c.exited.clone())
                .await
                .map_err(|e| error(Code::UNKNOWN, format!("{what}: {e}")))?,
            None => self.runtime(&what, &["start", &req.id]).await?,
        }
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
        self.publish(topics::TASK_START_EVENT_TOPIC, "TaskStart", &event)
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
            if exit.is_none() {
                // Never started, or still running: its attach server ends.
                let _ = e.exit_tx.send(Some((137, now_nanos())));
            }
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
        if c.mounted_rootfs {
            crate::mount::unmount_rootfs(&c.bundle);
        }
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
        let mut pids = vec![c.pid];
        if c.exited.borrow().is_none() {
            let out = self
                .runc
                .run(&["ps", "--format", "json", &req.id], None)
                .await
                .map_err(internal)?;
            if out.code == 0 {
                pids = serde_json::from_str::<Vec<u32>>(out.stdout.trim()).unwrap_or(pids);
            }
        }
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
        self.set_paused(&req.id, true).await
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        self.set_paused(&req.id, false).await
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .ok_or_else(|| error(Code::INVALID_ARGUMENT, "update without resources"))?;
        // containerd encodes the OCI LinuxResources as JSON.
        serde_json::from_slice::<serde_json::Value>(&resources.value).map_err(|e| {
            error(
                Code::INVALID_ARGUMENT,
                format!("resources are not OCI LinuxResources JSON: {e}"),
            )
        })?;
        let file = c.bundle.join("update.json");
        std::fs::write(&file, &resources.value).map_err(internal)?;
        let path = file.display().to_string();
        let result = self
            .runtime(
                &format!("update container {}", req.id),
                &["update", "--resources", &path, &req.id],
            )
            .await;
        let _ = std::fs::remove_file(&file);
        result.map(|()| api::Empty::default())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let c = self.get(&req.id)?;
        let metrics = self.metrics(&c)?;
        let mut any = containerd_shim::protos::protobuf::well_known_types::any::Any::new();
        any.type_url = METRICS_TYPE.to_string();
        any.value = metrics.write_to_bytes().map_err(internal)?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let io = self.process_io(&req.id, &req.exec_id)?;
        let (w, h) = (
            req.width.min(u16::MAX.into()),
            req.height.min(u16::MAX.into()),
        );
        io.resize(w as u16, h as u16).map_err(internal)?;
        Ok(api::Empty::default())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        if req.stdin {
            self.process_io(&req.id, &req.exec_id)?.close_stdin().await;
        }
        Ok(api::Empty::default())
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
