//! The seam between the task service and the OCI runtime: every runtime
//! call the shim makes, and the exits of the processes it starts. `Runc`
//! (runc.rs) is the real one; the unit tests use a recording fake.

use std::path::Path;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::Result;
use crate::io::ChildStdio;

/// An exit: code and time in nanoseconds since the epoch.
pub type Exit = (u32, i64);

/// Where a new process's stdio comes from.
pub enum Stdio {
    /// These descriptors (they become the process's).
    Pipes(ChildStdio),
    /// A terminal the runtime makes and sends on this console socket.
    Console(String),
}

/// What `runtime create` is given.
pub struct CreateArgs<'a> {
    /// The container.
    pub id: &'a str,
    /// Its bundle.
    pub bundle: &'a Path,
    /// Where the runtime writes the init's pid.
    pub pid_file: &'a Path,
    /// Where the runtime logs (JSON).
    pub log: &'a Path,
}

/// Exits of processes, watched from before they start so none is missed.
#[async_trait]
pub trait ExitWatch: Send {
    /// Waits for the exit code of `pid` and ends the watch; 255 if the
    /// watch ends first.
    async fn exit_of(self: Box<Self>, pid: u32) -> i32;
    /// Ends the watch (the process never started).
    async fn cancel(self: Box<Self>);
}

/// The OCI runtime as the shim uses it. Errors name the operation and the
/// container (`start container ID: …`). Every call but `create` ends by a
/// deadline: a hung runtime fails the call instead of holding its handler.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Starts watching exits; made before a process is created.
    async fn watch_exits(&self) -> Result<Box<dyn ExitWatch>>;
    /// Creates a container (its init waits to be started).
    async fn create(&self, args: &CreateArgs<'_>, stdio: Stdio) -> Result<()>;
    /// Starts a created container; `exited` turns `Some` when its init is
    /// gone.
    async fn start(&self, id: &str, exited: watch::Receiver<Option<Exit>>) -> Result<()>;
    /// Runs the process described in `process` in container `id`, detached,
    /// its pid written to `pid_file`.
    async fn exec(&self, id: &str, process: &Path, pid_file: &Path, stdio: Stdio) -> Result<()>;
    /// Sends `signal` to the init (with `all`, to every process).
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()>;
    /// Deletes the container, killing it if needed.
    async fn delete(&self, id: &str) -> Result<()>;
    /// The pids of the container's processes, if the runtime can tell.
    async fn ps(&self, id: &str) -> Result<Option<Vec<u32>>>;
    /// Freezes (`paused`) or thaws the container.
    async fn pause(&self, id: &str, paused: bool) -> Result<()>;
    /// Applies the OCI LinuxResources JSON in `resources`.
    async fn update(&self, id: &str, resources: &Path) -> Result<()>;
}
