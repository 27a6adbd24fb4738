//! The shim's error: what went wrong in a task operation, with its context.
//! The service turns it into a ttrpc status (`service::status`), nowhere
//! else.

use std::path::PathBuf;

/// A failed task operation.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No container of that id in this shim.
    #[error("container {0} not found")]
    ContainerNotFound(String),
    /// A container of that id exists already.
    #[error("container {0} exists")]
    ContainerExists(String),
    /// No exec of that id in the container.
    #[error("exec {exec_id} of container {id} not found")]
    ExecNotFound {
        /// The container.
        id: String,
        /// The exec.
        exec_id: String,
    },
    /// An exec of that id exists already.
    #[error("exec {exec_id} of container {id} exists")]
    ExecExists {
        /// The container.
        id: String,
        /// The exec.
        exec_id: String,
    },
    /// An exec id that could not name a file.
    #[error("exec id {0:?} is not a plain name")]
    ExecIdNotPlain(String),
    /// An exec request without its process.
    #[error("exec without a process spec")]
    NoProcessSpec,
    /// An update request without resources.
    #[error("update without resources")]
    NoResources,
    /// Resources that are not the OCI LinuxResources JSON.
    #[error("resources are not OCI LinuxResources JSON: {0}")]
    BadResources(serde_json::Error),
    /// A signal number the host does not know.
    #[error("signal {0}")]
    BadSignal(u32),
    /// The rootfs of a create request could not be mounted.
    #[error("{0}")]
    Mount(#[from] crate::mount::MountError),
    /// A process's stdio could not be set up (`what`: container or exec).
    #[error("{what} stdio: {source}")]
    Stdio {
        /// Whose stdio.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The container's log file could not be opened.
    #[error("open log {}: {source}", path.display())]
    OpenLog {
        /// The log path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime ran and failed (`what`: the operation; `message`: its
    /// error).
    #[error("{what}: {message}")]
    Runtime {
        /// The operation, with the container.
        what: String,
        /// The runtime's error.
        message: String,
    },
    /// A created container could not be started through runc's exec FIFO.
    #[error("start container {id}: {source}")]
    Start {
        /// The container.
        id: String,
        /// Why.
        source: crate::runc::FifoError,
    },
    /// The runtime could not be run.
    #[error("{what}: run runtime: {source}")]
    RunRuntime {
        /// The operation, with the container.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime started a process but left no pid file.
    #[error("runtime wrote no {0}pid file")]
    NoPidFile(&'static str),
    /// The exit monitor of the shim framework failed.
    #[error("exit monitor: {0}")]
    Monitor(containerd_shim::Error),
    /// The exit watch of a process went away.
    #[error("exit watcher gone")]
    ExitWatcherGone,
    /// The runtime sent no terminal on the console socket.
    #[error("the runtime sent no terminal")]
    NoTerminal,
    /// The container runs without a cgroup of its own.
    #[error("the container has no cgroup")]
    NoCgroup,
    /// The container's cgroup is gone.
    #[error("cgroup {} not found", .0.display())]
    CgroupNotFound(PathBuf),
    /// A reply could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] containerd_shim::protos::protobuf::Error),
    /// The task API could not be served (`what`: bind or serve, and where).
    #[error("{what}: {source}")]
    Serve {
        /// What failed.
        what: String,
        /// Why.
        source: containerd_shim::protos::ttrpc::Error,
    },
    /// Local file or socket work failed (`what`: which).
    #[error("{what}: {source}")]
    Io {
        /// What the shim was doing.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

impl ShimError {
    /// Local file or socket work that failed.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// What task operations return.
pub type Result<T, E = ShimError> = std::result::Result<T, E>;
