//! StartContainer, StopContainer, RemoveContainer, and the state of a
//! container as its shim (or, when the shim is gone, its bundle's exit
//! file) tells it.

use std::path::Path;
use std::time::Duration;

use crio_contract::bundle::{EXIT_FILE, OOM_FILE, parse_exit_record};

use super::{ContainerRecord, ContainerState, Containers};
use crate::error::{Error, Result};
use crate::shim::{CALL_TIMEOUT, Task, TaskError, TaskState, TaskStatus};

/// SIGTERM, the stop signal of an image that names none.
const SIGTERM: u32 = 15;
/// SIGKILL.
const SIGKILL: u32 = 9;

impl Containers {
    /// The task client of a container's pod shim.
    pub(super) async fn client(&self, r: &ContainerRecord) -> Result<Task> {
        Ok(self
            .shims
            .task(&r.pod_id, &self.pods.run_dir(&r.pod_id))
            .await?)
    }

    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.shims.check()?;
        let lock = self.locks.of(id);
        let _held = lock.lock().await;
        let mut r = self.existing(id)?;
        if r.state != ContainerState::Created {
            return Err(Error::Precondition(format!(
                "container {id} is not in the created state"
            )));
        }
        let client = self.client(&r).await?;
        // Taken before the call: a quick container may exit before it returns.
        let started_at = crio_api::time::now_nanos();
        let pid = client
            .start(&r.id, "")
            .await
            .map_err(Error::task("start task"))?;
        r.pid = pid;
        r.state = ContainerState::Running;
        r.started_at = started_at;
        self.save(&r)
    }

    /// Brings containers up to date without asking the shims about running
    /// ones: a container whose init exited has an `exit` file in its bundle
    /// (the shim writes it first thing) or no process left (its shim died
    /// with it), and only those are refreshed. For ListContainers, which
    /// kubelet polls every second.
    pub async fn refresh_ended(&self) {
        if self.shims.check().is_err() {
            return;
        }
        let running = self
            .records
            .filter_map(|r| (r.state == ContainerState::Running).then(|| (r.id.clone(), r.pid)));
        for (id, pid) in running {
            let ended = self.bundle(&id).join(EXIT_FILE).exists()
                || (pid > 0 && !Path::new(&format!("/proc/{pid}")).exists());
            if ended {
                let _ = self.refresh(&id).await;
            }
        }
    }

    /// Brings the record up to date with the shim (exit code and time).
    pub async fn refresh(&self, id: &str) -> Result<ContainerRecord> {
        self.shims.check()?;
        let mut r = self.existing(id)?;
        if r.state == ContainerState::Exited {
            return Ok(r);
        }
        let mut state = self.task_state(&r).await;
        if matches!(&state, Err(e) if e.is_unreachable()) {
            // A fresh connection before concluding the shim is gone.
            self.shims.forget(&r.pod_id);
            state = self.task_state(&r).await;
        }
        let state = match state {
            Ok(state) => state,
            Err(e) if e.is_unreachable() => return self.shim_lost(r),
            Err(e) => return Err(e),
        };
        if state.status == TaskStatus::Stopped {
            r.state = ContainerState::Exited;
            r.exit_code = state.exit_status as i32;
            r.finished_at = state.exited_at;
            // The shim marks OOM kills in the bundle.
            r.oom_killed = self.bundle(&r.id).join(OOM_FILE).exists();
            self.save(&r)?;
        }
        Ok(r)
    }

    pub(super) async fn task_state(&self, r: &ContainerRecord) -> Result<TaskState> {
        let client = self.client(r).await?;
        client.state(&r.id).await.map_err(Error::task("task state"))
    }

    /// The pod's shim is gone: the container is reported exited with what its
    /// bundle recorded (the shim writes the exit before anything else), or as
    /// lost when nothing was recorded.
    fn shim_lost(&self, mut r: ContainerRecord) -> Result<ContainerRecord> {
        let bundle = self.bundle(&r.id);
        let recorded = std::fs::read_to_string(bundle.join(EXIT_FILE))
            .ok()
            .and_then(|t| parse_exit_record(&t));
        r.state = ContainerState::Exited;
        r.oom_killed = bundle.join(OOM_FILE).exists();
        match recorded {
            Some((code, at)) => {
                r.exit_code = code;
                r.finished_at = at;
            }
            None => {
                r.exit_code = 255;
                r.finished_at = crio_api::time::now_nanos();
                r.message = "the pod's shim is gone: the container's exit was not recorded".into();
            }
        }
        tracing::warn!(container = %r.id, "shim unreachable: container reported exited");
        self.save(&r)?;
        Ok(r)
    }

    /// A running container, or FailedPrecondition naming its state.
    pub async fn running(&self, id: &str) -> Result<ContainerRecord> {
        let r = self.refresh(id).await?;
        if r.state != ContainerState::Running {
            return Err(Error::Precondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(r)
    }

    /// StopContainer: the image's stop signal (SIGTERM by default), SIGKILL
    /// after `timeout` seconds; idempotent.
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<()> {
        self.shims.check()?;
        let lock = self.locks.of(id);
        let _held = lock.lock().await;
        self.stop_locked(id, timeout).await
    }

    async fn stop_locked(&self, id: &str, timeout: i64) -> Result<()> {
        if self.get(id).is_none() {
            return Ok(());
        }
        // Up to date first: it may have exited, or its shim may be gone.
        let r = self.refresh(id).await?;
        if r.state != ContainerState::Running {
            return Ok(());
        }
        let client = self.client(&r).await?;
        let signal = match r.stop_signal {
            0 => SIGTERM,
            s => s,
        };
        client
            .kill(&r.id, "", signal, true)
            .await
            .map_err(Error::task("kill task"))?;
        let grace = Duration::from_secs(timeout.max(0) as u64);
        if tokio::time::timeout(grace, client.wait(&r.id, "", None))
            .await
            .is_err()
        {
            client
                .kill(&r.id, "", SIGKILL, true)
                .await
                .map_err(Error::task("kill task"))?;
            client
                .wait(&r.id, "", Some(CALL_TIMEOUT))
                .await
                .map_err(Error::task("wait task"))?;
        }
        self.refresh(id).await.map(drop)
    }

    /// RemoveContainer: stops it if needed, deletes the task, unmounts and
    /// removes everything; an unknown container is not an error.
    pub async fn remove(&self, id: &str) -> Result<()> {
        self.shims.check()?;
        let lock = self.locks.of(id);
        let _held = lock.lock().await;
        let Some(r) = self.get(id) else { return Ok(()) };
        self.stop_locked(&r.id, 0).await?;
        let shim_alive = self.client(&r).await.is_ok() && r.message.is_empty();
        if !shim_alive {
            // The shim's `delete` action force-deletes what it left.
            self.shims.delete_action(&r.id, &self.bundle(&r.id)).await;
        } else if let Ok(client) = self.client(&r).await {
            match client.delete(&r.id, "").await {
                Ok(()) | Err(TaskError::NotFound(_)) => {}
                Err(e) => return Err(Error::task("delete task")(e)),
            }
        }
        self.cleanup(&r.id);
        Ok(())
    }
}
