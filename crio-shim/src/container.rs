//! A container's init process: create (stdio, log, rootfs, `runtime
//! create`), start, kill, pause/resume, update, delete, and the watch of
//! its exit, which records the exit in the bundle before anyone hears of it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::protos::api;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use crio_attach::channel;
use crio_contract::bundle::{EXIT_FILE, OOM_FILE, exit_record};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bundle::BundleSpec;
use crate::error::{Result, ShimError};
use crate::events::now_nanos;
use crate::io::{IoOptions, ProcessIo};
use crate::log::LogFile;
use crate::runtime::{CreateArgs, Exit, ExitWatch, Stdio};
use crate::tasks::Tasks;

/// A container of the shim: its init process and what it was created with.
pub struct Container {
    /// Its bundle directory.
    pub bundle: PathBuf,
    /// The init's pid.
    pub pid: u32,
    /// Created, running, paused or stopped.
    pub status: Mutex<api::Status>,
    /// The init's exit, once recorded.
    pub exited: watch::Receiver<Option<Exit>>,
    /// The init's stdio.
    pub io: Arc<ProcessIo>,
    /// What the shim took from the bundle's config.json.
    pub spec: BundleSpec,
    /// Whether the shim mounted the rootfs (from the request's mounts).
    pub mounted_rootfs: bool,
    /// Whether a kill request sent the init SIGKILL: such an exit is no
    /// OOM kill, whatever the parent cgroup's count says.
    pub sigkill_sent: std::sync::atomic::AtomicBool,
}

/// A created init whose output is not copied yet.
struct Launched {
    pid: u32,
    outputs: Vec<(OwnedFd, u8)>,
}

impl Tasks {
    /// Creates container `req.id` from its bundle: mounts the request's
    /// rootfs, if any, and unmounts it again if the create fails.
    pub async fn create(self: &Arc<Self>, req: api::CreateTaskRequest) -> Result<u32> {
        if self.containers.lock().contains_key(&req.id) {
            return Err(ShimError::ContainerExists(req.id));
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = BundleSpec::read(&bundle, &self.cgroup_root).await;
        let mounted_rootfs = !req.rootfs.is_empty();
        let (mounts, target) = (req.rootfs.clone(), bundle.clone());
        blocking(move || {
            let mounts: Vec<_> = mounts
                .iter()
                .map(|m| crate::mount::RootfsMount {
                    kind: &m.type_,
                    source: &m.source,
                    options: &m.options,
                })
                .collect();
            crate::mount::mount_rootfs(&target, &mounts)
        })
        .await??;
        let created = self.create_mounted(&req, &bundle, spec).await;
        if created.is_err() && mounted_rootfs {
            unmount(bundle).await;
        }
        created
    }

    /// Creates a container whose rootfs is in place.
    async fn create_mounted(
        self: &Arc<Self>,
        req: &api::CreateTaskRequest,
        bundle: &Path,
        spec: BundleSpec,
    ) -> Result<u32> {
        let io = init_io(req, &spec).await?;
        // Subscribed before the container exists, so no exit is missed.
        let watch = self.runtime.watch_exits().await?;
        let launched = match self.launch_init(req, bundle, &io).await {
            Ok(launched) => launched,
            Err(e) => {
                watch.cancel().await;
                return Err(e);
            }
        };
        let pid = launched.pid;
        let (exit_tx, exited) = watch::channel(None);
        let attach = crio_attach::attach_path(&self.socket_dir, &req.id, "");
        if let Err(e) = io.clone().serve_attach(attach, exited.clone()).await {
            watch.cancel().await;
            let _ = self.runtime.delete(&req.id).await;
            return Err(ShimError::io("attach socket", e));
        }
        let pumps = spawn_pumps(&io, launched.outputs);
        let container = Arc::new(Container {
            bundle: bundle.to_path_buf(),
            pid,
            status: Mutex::new(api::Status::CREATED),
            exited,
            io,
            spec,
            mounted_rootfs: !req.rootfs.is_empty(),
            sigkill_sent: Default::default(),
        });
        self.containers
            .lock()
            .insert(req.id.clone(), container.clone());
        self.watch_init(req.id.clone(), container, watch, pumps, exit_tx);
        Ok(pid)
    }

    /// Runs `runtime create` with the init's stdio and reads the init's pid.
    async fn launch_init(
        &self,
        req: &api::CreateTaskRequest,
        bundle: &Path,
        io: &Arc<ProcessIo>,
    ) -> Result<Launched> {
        let pid_file = bundle.join("init.pid");
        let args = CreateArgs {
            id: &req.id,
            bundle: Path::new(&req.bundle),
            pid_file: &pid_file,
            log: &bundle.join("runtime.log"),
        };
        let outputs = if req.terminal {
            let socket = self
                .socket_dir
                .join(format!("{}.console", crate::console::short(&req.id)));
            let launch = |stdio| self.runtime.create(&args, stdio);
            let master = crate::console::with_console(&socket, launch).await?;
            match io.terminal(master).await {
                Ok(reader) => vec![(reader, channel::STDOUT)],
                Err(e) => {
                    let _ = self.runtime.delete(&req.id).await;
                    return Err(ShimError::Runtime {
                        what: format!("create container {}", req.id),
                        message: e.to_string(),
                    });
                }
            }
        } else {
            let (child, [out, err]) = io.pipes().await.map_err(|e| ShimError::Runtime {
                what: format!("create container {}", req.id),
                message: e.to_string(),
            })?;
            self.runtime.create(&args, Stdio::Pipes(child)).await?;
            vec![(out, channel::STDOUT), (err, channel::STDERR)]
        };
        let Some(pid) = read_pid(&pid_file).await else {
            let _ = self.runtime.delete(&req.id).await;
            return Err(ShimError::NoPidFile(""));
        };
        Ok(Launched { pid, outputs })
    }

    /// Watches the init's exit (and OOM kills while it runs). At the exit:
    /// output drained, TaskOOM if it was OOM-killed, the exit file written
    /// and made durable, and only then the status, Wait and TaskExit.
    fn watch_init(
        self: &Arc<Self>,
        id: String,
        container: Arc<Container>,
        watch: Box<dyn ExitWatch>,
        pumps: Vec<JoinHandle<()>>,
        exit_tx: watch::Sender<Option<Exit>>,
    ) {
        let (running_tx, running) = watch::channel(false);
        let parent_ooms = container
            .spec
            .memory_cgroup
            .as_deref()
            .and_then(crate::oom::ParentCount::read);
        let recorded_ooms = container.spec.memory_cgroup.as_ref().map(|cg| {
            let (oom_tx, mut ooms) = tokio::sync::mpsc::channel(4);
            tokio::spawn(crate::oom::watch(cg.clone(), running, oom_tx));
            let (tasks, id, bundle) = (self.clone(), id.clone(), container.bundle.clone());
            tokio::spawn(async move {
                while ooms.recv().await.is_some() {
                    tasks.oom_killed(&id, &bundle).await;
                }
            })
        });
        let tasks = self.clone();
        tokio::spawn(async move {
            let pid = container.pid;
            let code = watch.exit_of(pid).await;
            let _ = running_tx.send(true);
            // The kills the watch saw are recorded before the exit is.
            if let Some(recorded) = recorded_ooms {
                let _ = recorded.await;
            }
            // Let the pumps drain what the container wrote last.
            drain(pumps).await;
            container.io.finish(code).await;
            let exit = now_exit(code as u32);
            // Read before the runtime deletes the cgroup (systemd may
            // have removed it already).
            let sigkilled = code == 128 + nix::sys::signal::Signal::SIGKILL as i32
                && !container
                    .sigkill_sent
                    .load(std::sync::atomic::Ordering::SeqCst);
            let oom =
                container.spec.memory_cgroup.as_deref().is_some_and(|cg| {
                    crate::oom::killed_at_exit(cg, parent_ooms.as_ref(), sigkilled)
                });
            let oom_file = container.bundle.join(OOM_FILE);
            if oom && !tokio::fs::try_exists(&oom_file).await.unwrap_or(false) {
                tasks.oom_killed(&id, &container.bundle).await;
            }
            if let Err(e) = record_exit(container.bundle.clone(), exit).await {
                crate::messages::warn(format_args!("record exit of {id}: {e}"));
            }
            *container.status.lock() = api::Status::STOPPED;
            let _ = exit_tx.send(Some(exit));
            tasks.events.exited(&id, pid, exit).await;
        });
    }

    /// Records an OOM kill in the bundle and publishes TaskOOM.
    async fn oom_killed(&self, id: &str, bundle: &Path) {
        let _ = tokio::fs::write(bundle.join(OOM_FILE), "").await;
        self.events.oom(id).await;
    }

    /// Starts created container `id`; its init's pid.
    pub async fn start(&self, id: &str) -> Result<u32> {
        let c = self.container(id)?;
        self.runtime.start(id, c.exited.clone()).await?;
        {
            let mut status = c.status.lock();
            if *status == api::Status::CREATED {
                *status = api::Status::RUNNING;
            }
        }
        self.events.started(id, c.pid).await;
        Ok(c.pid)
    }

    /// Signals the init (with `all`, every process); nothing once it exited.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let c = self.container(id)?;
        if c.exited.borrow().is_some() {
            return Ok(());
        }
        if signal == nix::sys::signal::Signal::SIGKILL as u32 {
            c.sigkill_sent
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        match self.runtime.kill(id, signal, all).await {
            // Gone between the check and the kill: not an error.
            Err(_) if c.exited.borrow().is_some() => Ok(()),
            other => other,
        }
    }

    /// Deletes container `id`: the runtime's state, the rootfs the shim
    /// mounted, the table entry. Its pid and exit (137 if it never exited).
    pub async fn delete(&self, id: &str) -> Result<(u32, Exit)> {
        let c = self.container(id)?;
        self.runtime.delete(id).await?;
        let exit = *c.exited.borrow();
        if c.mounted_rootfs {
            unmount(c.bundle.clone()).await;
        }
        self.containers.lock().remove(id);
        Ok((c.pid, exit.unwrap_or_else(|| now_exit(137))))
    }

    /// The pids of the container's processes (the init's alone once it
    /// exited or when the runtime cannot tell).
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let c = self.container(id)?;
        if c.exited.borrow().is_some() {
            return Ok(vec![c.pid]);
        }
        Ok(self.runtime.ps(id).await?.unwrap_or_else(|| vec![c.pid]))
    }

    /// Freezes (`paused`) or thaws the container.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        let c = self.container(id)?;
        self.runtime.pause(id, paused).await?;
        *c.status.lock() = if paused {
            api::Status::PAUSED
        } else {
            api::Status::RUNNING
        };
        self.events.paused(id, paused).await;
        Ok(())
    }

    /// Applies `resources` (the OCI LinuxResources JSON containerd sends).
    pub async fn update(&self, id: &str, resources: Option<&[u8]>) -> Result<()> {
        let c = self.container(id)?;
        let resources = resources.ok_or(ShimError::NoResources)?;
        serde_json::from_slice::<serde_json::Value>(resources).map_err(ShimError::BadResources)?;
        let file = c.bundle.join("update.json");
        tokio::fs::write(&file, resources)
            .await
            .map_err(|e| ShimError::io(format!("write {}", file.display()), e))?;
        let result = self.runtime.update(id, &file).await;
        let _ = tokio::fs::remove_file(&file).await;
        result
    }

    /// The container's statistics, packed for Stats.
    pub async fn stats(&self, id: &str) -> Result<Any> {
        let c = self.container(id)?;
        let (root, cgroup) = (self.cgroup_root.clone(), c.spec.cgroup.clone());
        blocking(move || crate::metrics::stats(&root, cgroup.as_deref())).await?
    }
}

/// The init's stdio: the CRI log file and the request's FIFOs.
async fn init_io(req: &api::CreateTaskRequest, spec: &BundleSpec) -> Result<Arc<ProcessIo>> {
    let log = match &spec.log_path {
        Some(path) => Some(
            LogFile::open(path, spec.log_directory.as_deref(), spec.log_size_max)
                .await
                .map_err(|source| ShimError::OpenLog {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    ProcessIo::new(IoOptions {
        log,
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        stdin_fifo: req.stdin.clone(),
        stdin: spec.stdin,
        stdin_once: spec.stdin_once,
        file_max: None,
    })
    .await
    .map_err(|source| ShimError::Stdio {
        what: "container",
        source,
    })
}

/// An exit with `code`, now.
pub fn now_exit(code: u32) -> Exit {
    (code, now_nanos())
}

/// Runs blocking file work off the event loop.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ShimError::io("blocking task", std::io::Error::other(e)))
}

/// Unmounts what the shim mounted on the bundle's rootfs.
async fn unmount(bundle: PathBuf) {
    let _ = blocking(move || crate::mount::unmount_rootfs(&bundle)).await;
}

/// The pid a runtime wrote to `file`.
pub async fn read_pid(file: &Path) -> Option<u32> {
    tokio::fs::read_to_string(file)
        .await
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes `bundle/exit` atomically and durably (off the event loop); the
/// exit is announced only after this returns.
async fn record_exit(bundle: PathBuf, exit: Exit) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let tmp = bundle.join(".exit.tmp");
        std::fs::write(&tmp, exit_record(exit.0, exit.1))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, bundle.join(EXIT_FILE))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Starts copying each output of a process to its destinations.
pub fn spawn_pumps(io: &Arc<ProcessIo>, outputs: Vec<(OwnedFd, u8)>) -> Vec<JoinHandle<()>> {
    outputs
        .into_iter()
        .map(|(fd, ch)| tokio::spawn(io.clone().pump(fd, ch)))
        .collect()
}

/// Waits (a little) for the pumps to copy what a process wrote last: a
/// child that inherited the output may keep it open for longer.
pub async fn drain(pumps: Vec<JoinHandle<()>>) {
    for p in pumps {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p).await;
    }
}
