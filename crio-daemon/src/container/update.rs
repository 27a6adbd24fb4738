//! UpdateContainerResources, ReopenContainerLog, and what the status and
//! stats calls ask a container's shim (metrics, the init's pid).

use std::time::Duration;

use super::{ContainerRecord, ContainerState, Containers};
use crate::error::{Error, Result};

/// How long the stats calls wait for one pod's shim: a shim that does not
/// answer in time leaves its containers' CPU and memory out of the answer
/// (the other pods' are there), and is noted as not responding.
pub const STATS_DEADLINE: Duration = Duration::from_secs(2);

impl Containers {
    /// UpdateContainerResources: applies the new limits through the shim
    /// (the runtime's `update`) and keeps them in the record.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: crio_api::cri::LinuxContainerResources,
    ) -> Result<()> {
        self.shims.check()?;
        let r = self.refresh(id).await?;
        if r.state == ContainerState::Exited {
            return Err(Error::Precondition(format!("container {id} has exited")));
        }
        let oci = crio_spec::resources_of(&resources);
        let json = serde_json::to_vec(&oci).map_err(Error::internal)?;
        self.client(&r)
            .await?
            .update(&r.id, json)
            .await
            .map_err(Error::task("update resources"))?;
        // Only the resources change: an exit recorded meanwhile stays.
        self.change(&r.id, |r| {
            r.config
                .linux
                .get_or_insert_with(Default::default)
                .resources = Some(resources);
            true
        })
        .map(drop)
    }

    /// Freezes (`paused`) or thaws a running container through its shim
    /// (the status API's `/pause/{id}` and `/unpause/{id}`).
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        self.shims.check()?;
        let r = self.running(id).await?;
        let what = if paused { "pause" } else { "unpause" };
        self.client(&r)
            .await?
            .pause(&r.id, paused)
            .await
            .map_err(Error::task(what))
    }

    /// ReopenContainerLog: the shim opens the log file at its path again.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        self.shims.check()?;
        let r = self.running(id).await?;
        crio_attach::reopen_log(&self.attach_socket(&r.id, ""))
            .await
            .map_err(|e| Error::Failed(format!("reopen the log of container {id}: {e}")))
    }

    /// The cgroup statistics of a running container, from its shim, which
    /// has [`STATS_DEADLINE`] to answer.
    pub async fn metrics(
        &self,
        r: &ContainerRecord,
    ) -> Result<crio_api::task::cgroups::metrics::Metrics> {
        let ask = async {
            self.client(r)
                .await?
                .stats(&r.id)
                .await
                .map_err(Error::task("container stats"))
        };
        let answer = tokio::time::timeout(STATS_DEADLINE, ask)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Deadline(format!(
                    "container stats: the pod's shim did not answer within {STATS_DEADLINE:?}"
                )))
            });
        self.note(&r.pod_id, &answer);
        answer
    }

    /// What verbose ContainerStatus adds: the init's pid (0 once exited)
    /// and the OCI spec the container runs with; from the record and the
    /// bundle, never from the shim.
    pub fn verbose_info(&self, r: &ContainerRecord) -> (u32, serde_json::Value) {
        let pid = match r.state {
            ContainerState::Exited => 0,
            _ => r.pid,
        };
        let spec = std::fs::read(self.bundle(&r.id).join("config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or(serde_json::Value::Null);
        (pid, spec)
    }
}
