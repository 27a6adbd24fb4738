//! The daemon's side of the per-pod shims: starting a pod's shim with the
//! shim v2 `start` action, keeping a task client per pod (reconnecting from
//! the address file after a restart), and the events endpoint the shims
//! publish to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crio_api::task::{self, ttrpc};
use crio_contract::{env, pod};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

mod events;
#[cfg(test)]
pub mod fake;
mod liveness;
mod task_client;

pub use events::ShimEvent;

use task_client::TtrpcTask;
pub use task_client::{CALL_TIMEOUT, ExecProcess, TaskClient, TaskError, TaskState, TaskStatus};

/// A pod shim's task client.
pub type Task = Arc<dyn TaskClient>;

/// Why a pod's shim cannot be started or reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShimError {
    /// No shim binary was found at start-up.
    #[error(
        "the pod shim {} was not found at start-up: containers cannot run",
        crate::shim_binary::SHIM_NAME
    )]
    NoBinary,
    /// The pod has no shim address.
    #[error("pod {pod} has no shim (no address in {dir})")]
    NoAddress {
        /// The pod.
        pod: String,
        /// Its directory.
        dir: String,
    },
    /// A step failed.
    #[error("{what}: {message}")]
    Step {
        /// The step ("connect to shim unix:///…").
        what: String,
        /// Its error.
        message: String,
    },
    /// The shim did not serve within [`START_TIMEOUT`]; it was killed.
    #[error("shim of pod {pod} did not start within {timeout:?}: killed")]
    StartTimeout {
        /// The pod.
        pod: String,
        /// The deadline it missed.
        timeout: Duration,
    },
    /// The shim exited without serving.
    #[error("shim start failed ({status}): {log}")]
    StartFailed {
        /// Its exit status.
        status: String,
        /// Its log.
        log: String,
    },
}

fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let what = what.into();
    move |e| ShimError::Step {
        what,
        message: e.to_string(),
    }
}

/// The pod shims as the daemon's core uses them: a seam, so container and
/// pod operations run in unit tests against a fake.
#[async_trait::async_trait]
pub trait PodShims: Send + Sync {
    /// Whether shims can be started at all (a shim binary was found).
    fn check(&self) -> Result<(), ShimError>;
    /// The task client of pod `id`, starting its shim if it has none yet,
    /// in `cgroup` (the pod's cgroup parent).
    async fn ensure(&self, id: &str, pod_dir: &Path, cgroup: &str) -> Result<Task, ShimError>;
    /// The task client of pod `id`, whose files are in `pod_dir`.
    async fn task(&self, id: &str, pod_dir: &Path) -> Result<Task, ShimError>;
    /// Drops the cached client of pod `id` (the next call reconnects).
    fn forget(&self, id: &str);
    /// Whether pod `id`'s shim process still exists (false once it died),
    /// told without a call: cheap, never blocks.
    fn alive(&self, id: &str, pod_dir: &Path) -> bool;
    /// Force-deletes a container whose shim is gone.
    async fn delete_action(&self, container_id: &str, bundle: &Path);
    /// Asks pod `id`'s shim to exit and forgets it.
    async fn shutdown(&self, id: &str, pod_dir: &Path);
    /// The directory of the shims' sockets (attach sockets among them).
    fn socket_dir(&self) -> &Path;
}

/// The cgroup of a pod's shim: the pod's own (its cgroup parent, as CRI-O's
/// `conmon_cgroup = "pod"`), or `/crio-shims` for a pod without one; never
/// the daemon's.
fn shim_cgroup(pod_cgroup: &str) -> String {
    if pod_cgroup.is_empty() {
        "/crio-shims".into()
    } else {
        crio_cgroups::cgroupfs_path(pod_cgroup)
            .display()
            .to_string()
    }
}

/// Where a pod's shim address is: the daemon's copy, then the file the
/// shim's `start` action writes in its working directory (the pod's
/// directory) before it answers — there even if the daemon died between.
const ADDRESS_FILES: [&str; 2] = [pod::SHIM_ADDRESS_FILE, pod::START_ADDRESS_FILE];

/// The address of the shim of the pod whose directory is `pod_dir`.
fn address_of(pod_dir: &Path) -> Option<String> {
    ADDRESS_FILES.iter().find_map(|f| {
        std::fs::read_to_string(pod_dir.join(f))
            .ok()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
    })
}

/// How long a pod's shim may take to serve after it is spawned (it
/// normally takes a few milliseconds; a shim stuck before it serves would
/// otherwise hold its pod's RunPodSandbox forever).
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the shim binary's `delete` action may run: longer than the
/// shim's own deadline for the runtime's `delete`, so that one fires first.
const DELETE_ACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The shim namespace crio-rs uses.
pub const NAMESPACE: &str = "crio";

/// Starts and finds pod shims.
pub struct Shims {
    /// None when no shim binary was found: no pod can get a shim.
    binary: Option<PathBuf>,
    runtime: PathBuf,
    runtime_root: PathBuf,
    systemd_cgroup: bool,
    log_format: &'static str,
    start_timeout: Duration,
    socket_dir: PathBuf,
    events: PathBuf,
    clients: Mutex<HashMap<String, TtrpcTask>>,
    /// One start at a time per pod: concurrent creates share one shim.
    starting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The shims this daemon started, until shut down: a shutdown waits for
    /// the process to be gone, so nothing of a rolled-back pod outlives it.
    /// Each is reaped by a task of its own as soon as it exits.
    exits: Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// The shims' events, until the container core takes them.
    events_queue: Mutex<Option<tokio::sync::mpsc::Receiver<ShimEvent>>>,
    _server: tokio::sync::Mutex<Option<ttrpc::asynchronous::Server>>,
}

fn ttrpc_err(what: impl Into<String>) -> impl FnOnce(ttrpc::Error) -> ShimError {
    let what = what.into();
    move |e| ShimError::Step {
        what,
        message: e.to_string(),
    }
}

/// What a pod's shim is started with.
pub struct ShimConfig {
    /// The shim binary (None: not found, no shim can start).
    pub binary: Option<PathBuf>,
    /// The OCI runtime.
    pub runtime: PathBuf,
    /// Its state directory.
    pub runtime_root: PathBuf,
    /// Its systemd cgroup driver.
    pub systemd_cgroup: bool,
    /// The shim's log format ("text" or "json"), as the daemon's.
    pub log_format: &'static str,
    /// How long a shim may take to serve ([`START_TIMEOUT`]).
    pub start_timeout: Duration,
}

impl Shims {
    /// Serves the events endpoint under `runroot` and prepares to start
    /// the shim binary (when there is one) with the configured runtime.
    pub async fn start(config: ShimConfig, runroot: &Path) -> Result<Self, ShimError> {
        let socket_dir = runroot.join("shims");
        let events = runroot.join("events.sock");
        let mut server = None;
        let (queue, events_queue) = tokio::sync::mpsc::channel(events::QUEUE);
        if config.binary.is_some() {
            crio_storage::dirs::ensure(&socket_dir, crio_storage::dirs::PRIVATE)
                .map_err(step("create shims dir"))?;
            let _ = std::fs::remove_file(&events);
            let service = task::create_events(Arc::new(events::Endpoint(queue)));
            let mut events_server = ttrpc::asynchronous::Server::new()
                .bind(&format!("unix://{}", events.display()))
                .map_err(ttrpc_err("bind events socket"))?
                .register_service(service);
            events_server
                .start()
                .await
                .map_err(ttrpc_err("serve events"))?;
            server = Some(events_server);
        }
        Ok(Self {
            binary: config.binary,
            runtime: config.runtime,
            runtime_root: config.runtime_root,
            systemd_cgroup: config.systemd_cgroup,
            log_format: config.log_format,
            start_timeout: config.start_timeout,
            socket_dir,
            events,
            clients: Mutex::default(),
            starting: Mutex::default(),
            exits: Mutex::default(),
            events_queue: Mutex::new(Some(events_queue)),
            _server: tokio::sync::Mutex::new(server),
        })
    }

    /// The events the shims publish (exits, OOM kills), in the order they
    /// arrive; there is one taker.
    pub fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<ShimEvent>> {
        self.events_queue.lock().take()
    }

    /// The ttrpc client of pod `id`: cached, or connected from the address
    /// file in `pod_dir`.
    async fn client(&self, id: &str, pod_dir: &Path) -> Result<TtrpcTask, ShimError> {
        if let Some(c) = self.clients.lock().get(id) {
            return Ok(c.clone());
        }
        let address = address_of(pod_dir).ok_or_else(|| ShimError::NoAddress {
            pod: id.to_string(),
            dir: pod_dir.display().to_string(),
        })?;
        let client = ttrpc::asynchronous::Client::connect(&address)
            .await
            .map_err(ttrpc_err(format!("connect to shim {address}")))?;
        let task = TtrpcTask(task::TaskClient::new(client));
        self.clients.lock().insert(id.to_string(), task.clone());
        Ok(task)
    }

    /// Starts pod `id`'s shim server directly (what the binary's `start`
    /// action would do, without that extra process): its sockets are
    /// `<socket_dir>/<id[:32]>.sock` (the task API) and `.v3.sock` (the
    /// framework's), as `start` names them; it is ready once it closes its
    /// stdout. The daemon stays its parent (and reaps it) until it exits.
    async fn spawn(
        &self,
        binary: &Path,
        id: &str,
        pod_dir: &Path,
        cgroup: &str,
    ) -> Result<String, ShimError> {
        let short: String = id.chars().take(32).collect();
        let socket = |suffix: &str| format!("unix://{}/{short}{suffix}", self.socket_dir.display());
        // Recorded before the shim exists, so a daemon that dies while it
        // starts finds it again (or finds nothing there) after a restart.
        let address = socket(".sock");
        let address_file = pod_dir.join(pod::SHIM_ADDRESS_FILE);
        std::fs::write(&address_file, &address).map_err(step("write shim address"))?;
        let started = self
            .run_server(binary, id, pod_dir, cgroup, [&address, &socket(".v3.sock")])
            .await;
        if let Err(e) = &started {
            let _ = std::fs::remove_file(&address_file);
            // A shim killed at its start deadline may have bound them.
            for suffix in [".sock", ".v3.sock"] {
                let _ = std::fs::remove_file(socket(suffix).trim_start_matches("unix://"));
            }
            tracing::warn!(pod = id, "{e}");
        }
        started.map(|()| address)
    }

    /// Runs the server of pod `id` on `[task API socket, framework socket]`
    /// and waits until it serves.
    async fn run_server(
        &self,
        binary: &Path,
        id: &str,
        pod_dir: &Path,
        cgroup: &str,
        [served, framework_socket]: [&str; 2],
    ) -> Result<(), ShimError> {
        // The shim's messages (it has no other log) go to the pod's directory.
        let log_path = pod_dir.join("shim.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(step(format!("open {}", log_path.display())))?;
        let mut child = tokio::process::Command::new(binary)
            .args([
                "-namespace",
                NAMESPACE,
                "-id",
                id,
                "-address",
                &self.events.display().to_string(),
                "-socket",
                framework_socket,
            ])
            .current_dir(pod_dir)
            .env("TTRPC_ADDRESS", &self.events)
            .env(env::SHIM_SOCKET_DIR, &self.socket_dir)
            .env(env::RUNTIME, &self.runtime)
            .env(env::RUNTIME_ROOT, &self.runtime_root)
            .env(env::SHIM_CGROUP, shim_cgroup(cgroup))
            .env(env::LOG_FORMAT, self.log_format)
            // One malloc arena: the shim's few threads need no more, and
            // each extra arena is memory the pod pays for.
            .env("MALLOC_ARENA_MAX", "1")
            .env(
                env::SYSTEMD_CGROUP,
                if self.systemd_cgroup { "1" } else { "0" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(step(format!("start shim {}", binary.display())))?;
        let stdout = child.stdout.take();
        let ready = async {
            if let Some(mut out) = stdout {
                let _ = out.read_to_end(&mut Vec::new()).await;
            }
        };
        if tokio::time::timeout(self.start_timeout, ready)
            .await
            .is_err()
        {
            let _ = child.start_kill();
            // SIGKILLed: the wait is short.
            let _ = child.wait().await;
            return Err(ShimError::StartTimeout {
                pod: id.to_string(),
                timeout: self.start_timeout,
            });
        }
        if Path::new(served.trim_start_matches("unix://")).exists() {
            let (exited, exit) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = child.wait().await;
                let _ = exited.send(true);
            });
            self.exits.lock().insert(id.to_string(), exit);
            return Ok(());
        }
        // It exited without serving: its status and log say why.
        let status = child.wait().await.map_err(step("wait for the shim"))?;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        Err(ShimError::StartFailed {
            status: status.to_string(),
            log: log.trim().to_string(),
        })
    }
}

#[async_trait::async_trait]
impl PodShims for Shims {
    fn check(&self) -> Result<(), ShimError> {
        match self.binary {
            Some(_) => Ok(()),
            None => Err(ShimError::NoBinary),
        }
    }

    async fn ensure(&self, id: &str, pod_dir: &Path, cgroup: &str) -> Result<Task, ShimError> {
        let binary = self.binary.as_deref().ok_or(ShimError::NoBinary)?;
        if address_of(pod_dir).is_some() && !self.alive(id, pod_dir) {
            // What is left of a shim that died goes; a new one starts.
            tracing::warn!(pod = id, "the pod's shim died: starting a new one");
            self.shutdown(id, pod_dir).await;
        }
        if address_of(pod_dir).is_none() {
            let lock = self
                .starting
                .lock()
                .entry(id.to_string())
                .or_default()
                .clone();
            let _held = lock.lock().await;
            if address_of(pod_dir).is_none() {
                self.spawn(binary, id, pod_dir, cgroup).await?;
            }
        }
        self.task(id, pod_dir).await
    }

    async fn task(&self, id: &str, pod_dir: &Path) -> Result<Task, ShimError> {
        Ok(Arc::new(self.client(id, pod_dir).await?))
    }

    fn forget(&self, id: &str) {
        self.clients.lock().remove(id);
    }

    fn alive(&self, id: &str, pod_dir: &Path) -> bool {
        let exited = self.exits.lock().get(id).is_some_and(|e| *e.borrow());
        !exited && address_of(pod_dir).is_some_and(|a| liveness::accepts(&a))
    }

    /// Runs the shim binary's `delete` action: it force-deletes the
    /// container in the runtime.
    async fn delete_action(&self, container_id: &str, bundle: &Path) {
        let Some(binary) = &self.binary else { return };
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args([
            "-namespace",
            NAMESPACE,
            "-id",
            container_id,
            "-bundle",
            &bundle.display().to_string(),
            "delete",
        ])
        .current_dir(bundle)
        .env(env::RUNTIME, &self.runtime)
        .env(env::RUNTIME_ROOT, &self.runtime_root)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        match tokio::time::timeout(DELETE_ACTION_TIMEOUT, cmd.output()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(container = container_id, "shim delete action: {e}"),
            Err(_) => tracing::warn!(
                container = container_id,
                "shim delete action still running after {DELETE_ACTION_TIMEOUT:?}: killed"
            ),
        }
    }

    async fn shutdown(&self, id: &str, pod_dir: &Path) {
        self.starting.lock().remove(id);
        let address = address_of(pod_dir).unwrap_or_default();
        let client = self.clients.lock().remove(id);
        let client = match client {
            Some(c) => Some(c.0),
            None if !address.is_empty() => self.client(id, pod_dir).await.ok().map(|c| c.0),
            None => None,
        };
        if let Some(c) = client {
            let req = task::ShutdownRequest {
                id: id.to_string(),
                now: true,
                ..Default::default()
            };
            let _ = c
                .shutdown(ttrpc::context::with_timeout(2_000_000_000), &req)
                .await;
            let exit = self.exits.lock().remove(id);
            if let Some(mut exit) = exit {
                let exited =
                    tokio::time::timeout(Duration::from_secs(2), exit.wait_for(|e| *e)).await;
                if exited.is_err() {
                    tracing::warn!(pod = id, "shim still running 2 s after its shutdown");
                }
            }
            self.clients.lock().remove(id);
        }
        for file in ADDRESS_FILES {
            let _ = std::fs::remove_file(pod_dir.join(file));
        }
        // A dead shim cannot remove its own socket.
        if let Some(path) = address.trim().strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
            // The shim framework's own socket beside it.
            if let Some(base) = path.strip_suffix(".sock") {
                let _ = std::fs::remove_file(format!("{base}.v3.sock"));
            }
        }
    }

    fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shim_that_never_serves_is_killed_at_the_start_deadline() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (binary, pid_file) = (tmp.path().join("shim"), tmp.path().join("pid"));
        let script = format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 600\n",
            pid_file.display()
        );
        std::fs::write(&binary, script).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = ShimConfig {
            binary: Some(binary),
            runtime: "runc".into(),
            runtime_root: tmp.path().join("runc"),
            systemd_cgroup: false,
            log_format: "text",
            start_timeout: Duration::from_millis(300),
        };
        let shims = Shims::start(config, &tmp.path().join("run")).await.unwrap();
        let pod_dir = tmp.path().join("pod");
        std::fs::create_dir(&pod_dir).unwrap();
        let started = std::time::Instant::now();
        let err = shims.ensure("pod1", &pod_dir, "").await.err().unwrap();
        assert!(matches!(err, ShimError::StartTimeout { .. }), "{err}");
        assert!(err.to_string().contains("pod1"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "the shim was killed and reaped"
        );
        assert!(address_of(&pod_dir).is_none(), "no address is left");
    }
}
