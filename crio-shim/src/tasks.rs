//! The shim's tables (its containers and their execs) and what every task
//! operation shares: the runtime, the socket directory, the event sink.
//! The operations live beside it, one file each: `container`, `exec`,
//! `metrics`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::container::Container;
use crate::error::{Result, ShimError};
use crate::events::Events;
use crate::exec::ExecProcess;
use crate::io::ProcessIo;
use crate::runtime::{Exit, Runtime};

/// Container ID and exec ID.
pub type ExecKey = (String, String);

/// One pod's containers and execs.
pub struct Tasks {
    /// The OCI runtime.
    pub runtime: Arc<dyn Runtime>,
    /// Where console and attach sockets go.
    pub socket_dir: PathBuf,
    /// The cgroup filesystem (OOM watch, statistics).
    pub cgroup_root: PathBuf,
    /// Where events go.
    pub events: Events,
    pub(crate) containers: Mutex<HashMap<String, Arc<Container>>>,
    pub(crate) execs: Mutex<HashMap<ExecKey, Arc<ExecProcess>>>,
}

impl Tasks {
    /// Empty tables.
    pub fn new(runtime: Arc<dyn Runtime>, socket_dir: PathBuf, events: Events) -> Self {
        Self {
            runtime,
            socket_dir,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            events,
            containers: Mutex::default(),
            execs: Mutex::default(),
        }
    }

    /// The container `id`.
    pub fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.containers
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::ContainerNotFound(id.to_string()))
    }

    /// The exec `exec_id` of container `id`.
    pub fn exec_process(&self, id: &str, exec_id: &str) -> Result<Arc<ExecProcess>> {
        self.execs
            .lock()
            .get(&(id.to_string(), exec_id.to_string()))
            .cloned()
            .ok_or_else(|| ShimError::ExecNotFound {
                id: id.to_string(),
                exec_id: exec_id.to_string(),
            })
    }

    /// The stdio of the init (empty `exec_id`) or of an exec.
    pub fn process_io(&self, id: &str, exec_id: &str) -> Result<Arc<ProcessIo>> {
        if exec_id.is_empty() {
            Ok(self.container(id)?.io.clone())
        } else {
            Ok(self.exec_process(id, exec_id)?.io.clone())
        }
    }

    /// Waits for the exit of the init (empty `exec_id`) or of an exec.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<Exit> {
        let mut exited = if exec_id.is_empty() {
            self.container(id)?.exited.clone()
        } else {
            self.exec_process(id, exec_id)?.exited.clone()
        };
        let exit = *exited
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ShimError::ExitWatcherGone)?;
        Ok(exit.unwrap_or((255, 0)))
    }

    /// Whether no container is left.
    pub fn is_empty(&self) -> bool {
        self.containers.lock().is_empty()
    }
}
