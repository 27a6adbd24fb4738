//! StartContainer, StopContainer, RemoveContainer, and the state of a
//! container brought up to date with its shim for them; a container whose
//! shim died is stopped through `/proc`.

use std::time::Duration;

use tracing::Instrument;

use super::evidence::{self, init_gone};
use super::{ContainerRecord, ContainerState, Containers};
use crate::error::{Error, Result};
use crate::shim::{CALL_TIMEOUT, Task, TaskError, TaskState};

/// SIGTERM, the stop signal of an image that names none.
const SIGTERM: u32 = 15;
/// SIGKILL.
const SIGKILL: u32 = 9;
/// How long the process of a container whose shim died may take to go
/// after SIGKILL (it can be in uninterruptible sleep).
const ORPHAN_KILL_WAIT: Duration = Duration::from_secs(5);

impl Containers {
    /// The task client of a container's pod shim.
    pub(super) async fn client(&self, r: &ContainerRecord) -> Result<Task> {
        Ok(self
            .shims
            .task(&r.pod_id, &self.pods.run_dir(&r.pod_id))
            .await?)
    }

    /// Force-deletes container `r` with its pod's shim binary.
    async fn delete_action(&self, r: &ContainerRecord) {
        let handler = self.pods.get(&r.pod_id).map(|p| p.runtime_handler);
        let handler = handler.unwrap_or_default();
        self.shims
            .delete_action(&r.id, &self.bundle(&r.id), &handler)
            .await;
    }

    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.shims.check()?;
        let lock = self.locks.of(id);
        let _held = lock.lock().await;
        let r = self.existing(id)?;
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
            .instrument(crate::telemetry::step("task start"))
            .await
            .map_err(Error::task("start task"));
        self.note(&r.pod_id, &pid);
        let pid = pid?;
        let pid_start = evidence::start_time(pid);
        // An exit recorded meanwhile (its event came first) stays.
        let _record = crate::telemetry::step("record").entered();
        self.change(&r.id, |r| {
            r.pid = pid;
            r.pid_start = pid_start;
            r.started_at = started_at;
            if r.state == ContainerState::Created {
                r.state = ContainerState::Running;
            }
            true
        })
        .map(drop)
    }

    /// Brings the record up to date from the evidence on this node, then
    /// with its shim's answer. A shim that does not answer changes nothing
    /// (its error is returned): that is no evidence of an exit.
    pub async fn refresh(&self, id: &str) -> Result<ContainerRecord> {
        self.shims.check()?;
        let r = self.observe(id)?;
        if r.state == ContainerState::Exited {
            return Ok(r);
        }
        let state = self.task_state(&r).await;
        self.note(&r.pod_id, &state);
        match state {
            Ok(state) => Ok(self.reconcile(&r, state)),
            Err(e) => {
                if e.is_unreachable() && !self.shim_alive(&r.pod_id) {
                    // A shim started again later is reached afresh.
                    self.shims.forget(&r.pod_id);
                }
                Err(e)
            }
        }
    }

    pub(super) async fn task_state(&self, r: &ContainerRecord) -> Result<TaskState> {
        let client = self.client(r).await?;
        client.state(&r.id).await.map_err(Error::task("task state"))
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
        let Some(r) = self.get(id) else {
            return Ok(());
        };
        if r.orphaned {
            return self.stop_orphan(&r.id).await;
        }
        // Up to date first: it may have exited, or its shim may be gone.
        let r = match self.refresh(&r.id).await {
            Ok(r) => r,
            // Its shim died, or the pod's shim does not know it: nobody
            // monitors it any more.
            Err(e) if e.is_unreachable() && !self.shim_alive(&r.pod_id) => {
                return self.stop_orphan(&r.id).await;
            }
            Err(Error::Task {
                source: TaskError::NotFound(_),
                ..
            }) => return self.stop_orphan(&r.id).await,
            Err(e) => return Err(e),
        };
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
        if r.orphaned || !self.shim_alive(&r.pod_id) {
            // The shim's `delete` action force-deletes what it left.
            self.delete_action(&r).await;
        } else if let Ok(client) = self.client(&r).await {
            match client.delete(&r.id, "").await {
                Ok(()) => {}
                // Not this shim's (one that died ran it): forced down.
                Err(TaskError::NotFound(_)) => {
                    self.delete_action(&r).await;
                }
                Err(e) => return Err(Error::task("delete task")(e)),
            }
        }
        self.cleanup(&r.id);
        crate::metrics::global().container_removed(&r.name);
        Ok(())
    }

    /// Stops a container whose pod's shim died: its init, if it is still
    /// the process that was started, gets SIGKILL (the runtime forces down
    /// one whose pid is unknown); once it is gone, the container is
    /// recorded exited with its monitor lost.
    async fn stop_orphan(&self, id: &str) -> Result<()> {
        let r = self.observe(id)?;
        if r.state != ContainerState::Running {
            return Ok(());
        }
        if r.pid == 0 {
            // Its pid was never known: the runtime forces it down.
            self.delete_action(&r).await;
            self.record_lost(&r.id);
            return Ok(());
        }
        if !init_gone(r.pid, r.pid_start) {
            let pid = nix::unistd::Pid::from_raw(r.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + ORPHAN_KILL_WAIT;
        while !init_gone(r.pid, r.pid_start) {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "container {id}: its process {} outlived SIGKILL for {ORPHAN_KILL_WAIT:?}",
                    r.pid
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.record_lost(&r.id);
        Ok(())
    }
}
