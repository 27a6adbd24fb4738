//! The daemon's side of the per-pod shims: starting a pod's shim with the
//! shim v2 `start` action, keeping a task client per pod (reconnecting from
//! the address file after a restart), and the events endpoint the shims
//! publish to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crio_api::task::{self, ttrpc};
use crio_contract::pod;
use parking_lot::Mutex;

use crate::handlers::{HandlerError, Handlers};

mod events;
#[cfg(test)]
pub mod fake;
mod liveness;
mod scope;
mod start;
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
    /// The pod's runtime handler cannot run it.
    #[error(transparent)]
    Handler(#[from] HandlerError),
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
    /// The task client of pod `id`, starting its shim if it has none yet:
    /// the one of runtime handler `handler` ("" is the default), in
    /// `cgroup` (the pod's cgroup parent).
    async fn ensure(
        &self,
        id: &str,
        pod_dir: &Path,
        cgroup: &str,
        handler: &str,
    ) -> Result<Task, ShimError>;
    /// The task client of pod `id`, whose files are in `pod_dir`.
    async fn task(&self, id: &str, pod_dir: &Path) -> Result<Task, ShimError>;
    /// Drops the cached client of pod `id` (the next call reconnects).
    fn forget(&self, id: &str);
    /// Whether pod `id`'s shim process still exists (false once it died),
    /// told without a call: cheap, never blocks.
    fn alive(&self, id: &str, pod_dir: &Path) -> bool;
    /// Force-deletes a container whose shim is gone, with the shim binary
    /// of its pod's runtime handler `handler`.
    async fn delete_action(&self, container_id: &str, bundle: &Path, handler: &str);
    /// Asks pod `id`'s shim to exit, forgets it and removes its cgroup
    /// (below `cgroup`, the pod's cgroup parent).
    async fn shutdown(&self, id: &str, pod_dir: &Path, cgroup: &str);
    /// The directory of the shims' sockets (attach sockets among them).
    fn socket_dir(&self) -> &Path;
}

/// Where a pod's shim lives: a cgroup of its own below the pod's, never the
/// daemon's (as CRI-O's `conmon_cgroup = "pod"`), and a leaf, which cgroup
/// v2 requires of a cgroup with processes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// cgroupfs driver: `<pod cgroup parent or /crio>/crio-shim-<pod>`,
    /// which the shim joins itself and the daemon removes once it is gone.
    Cgroup(PathBuf),
    /// systemd driver: a transient scope in the pod's slice (or
    /// `system.slice`), which systemd removes once it is empty.
    Scope {
        /// The slice.
        slice: String,
        /// The scope unit.
        unit: String,
    },
}

impl Place {
    /// The place of pod `id`'s shim, of a pod with cgroup parent `parent`.
    fn of(systemd_cgroup: bool, parent: &str, id: &str) -> Self {
        if systemd_cgroup {
            let slice = if parent.is_empty() {
                "system.slice"
            } else {
                parent
            };
            return Place::Scope {
                slice: slice.to_string(),
                unit: scope::unit(id),
            };
        }
        let parent = if parent.is_empty() {
            PathBuf::from("/crio")
        } else {
            crio_cgroups::cgroupfs_path(parent)
        };
        Place::Cgroup(parent.join(format!("crio-shim-{id}")))
    }
}

/// Removes a gone shim's cgroup `leaf`: a process that just exited may
/// hold it for a moment (until it is reaped), so removal is retried for a
/// second before it is left for the pod's cgroup removal.
async fn remove_cgroup(leaf: &Path) {
    let root = Path::new("/sys/fs/cgroup");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match crio_cgroups::remove(root, leaf) {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(cgroup = %leaf.display(), "remove the shim's cgroup: {e}");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
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
    /// The runtime handlers: each pod's shim is its handler's.
    handlers: Arc<Handlers>,
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

/// What pods' shims are started with.
pub struct ShimConfig {
    /// The runtime handlers: shim binary, OCI runtime and root of each.
    pub handlers: Arc<Handlers>,
    /// Their systemd cgroup driver.
    pub systemd_cgroup: bool,
    /// The shim's log format ("text" or "json"), as the daemon's.
    pub log_format: &'static str,
    /// How long a shim may take to serve ([`START_TIMEOUT`]).
    pub start_timeout: Duration,
}

impl Shims {
    /// Serves the events endpoint under `runroot` (when any handler has a
    /// shim binary) and prepares to start each handler's shims.
    pub async fn start(config: ShimConfig, runroot: &Path) -> Result<Self, ShimError> {
        let socket_dir = runroot.join("shims");
        let events = runroot.join("events.sock");
        let mut server = None;
        let (queue, events_queue) = tokio::sync::mpsc::channel(events::QUEUE);
        if config.handlers.any_shim() {
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
            handlers: config.handlers,
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
}

#[async_trait::async_trait]
impl PodShims for Shims {
    fn check(&self) -> Result<(), ShimError> {
        match self.handlers.any_shim() {
            true => Ok(()),
            false => Err(ShimError::NoBinary),
        }
    }

    async fn ensure(
        &self,
        id: &str,
        pod_dir: &Path,
        cgroup: &str,
        handler: &str,
    ) -> Result<Task, ShimError> {
        let handler = self.handlers.resolve(handler)?;
        if address_of(pod_dir).is_some() && !self.alive(id, pod_dir) {
            // What is left of a shim that died goes; a new one starts.
            tracing::warn!(pod = id, "the pod's shim died: starting a new one");
            self.shutdown(id, pod_dir, cgroup).await;
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
                self.spawn(&handler, id, pod_dir, cgroup).await?;
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

    /// Runs the `delete` action of the pod's shim binary: it force-deletes
    /// the container in the runtime.
    async fn delete_action(&self, container_id: &str, bundle: &Path, handler: &str) {
        let Some(handler) = self.handlers.get(handler) else {
            return;
        };
        let Some(binary) = &handler.shim else { return };
        let mut cmd = self.command(&handler, binary, bundle);
        cmd.args([
            "-namespace",
            NAMESPACE,
            "-id",
            container_id,
            "-bundle",
            &bundle.display().to_string(),
            "delete",
        ])
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

    async fn shutdown(&self, id: &str, pod_dir: &Path, cgroup: &str) {
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
            let gone = async {
                match exit {
                    Some(mut exit) => drop(exit.wait_for(|e| *e).await),
                    // Not the daemon's child (started by a `start` action,
                    // or before a restart): gone once its socket refuses.
                    None => {
                        while liveness::accepts(&address) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), gone)
                .await
                .is_err()
            {
                tracing::warn!(pod = id, "shim still running 2 s after its shutdown");
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
        if let Place::Cgroup(leaf) = Place::of(self.systemd_cgroup, cgroup, id) {
            remove_cgroup(&leaf).await;
        }
    }

    fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_gets_a_leaf_below_its_pod_under_either_driver() {
        let cgroup = |p: &str| Place::Cgroup(PathBuf::from(p));
        assert_eq!(
            Place::of(false, "/kubepods/pod1", "p1"),
            cgroup("/kubepods/pod1/crio-shim-p1")
        );
        assert_eq!(Place::of(false, "", "p1"), cgroup("/crio/crio-shim-p1"));
        // A slice name under the cgroupfs driver is its slice path.
        assert_eq!(
            Place::of(false, "kubepods-pod1.slice", "p1"),
            cgroup("/kubepods.slice/kubepods-pod1.slice/crio-shim-p1")
        );
        let scope = |slice: &str| Place::Scope {
            slice: slice.into(),
            unit: "crio-shim-p1.scope".into(),
        };
        assert_eq!(
            Place::of(true, "kubepods-besteffort-pod1.slice", "p1"),
            scope("kubepods-besteffort-pod1.slice")
        );
        assert_eq!(Place::of(true, "", "p1"), scope("system.slice"));
    }

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
        let mut config = crio_config::Config::default();
        config.runtime.runtimes.retain(|name, _| name == "runc");
        let runc = config.runtime.runtimes.get_mut("runc").unwrap();
        runc.monitor_path = binary;
        runc.runtime_root = tmp.path().join("runc");
        let locator = crate::handlers::Locator {
            own_exe: None,
            path_env: "",
        };
        let handlers = Handlers::configured(&config, &Default::default(), &locator);
        let config = ShimConfig {
            handlers: Arc::new(handlers),
            systemd_cgroup: false,
            log_format: "text",
            start_timeout: Duration::from_millis(300),
        };
        let shims = Shims::start(config, &tmp.path().join("run")).await.unwrap();
        let pod_dir = tmp.path().join("pod");
        std::fs::create_dir(&pod_dir).unwrap();
        let started = std::time::Instant::now();
        let err = shims.ensure("pod1", &pod_dir, "", "").await.err().unwrap();
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
