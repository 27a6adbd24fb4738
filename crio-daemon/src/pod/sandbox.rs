//! A pod with its containers: RunPodSandbox with the infra container (the
//! pod removed again when it cannot run), and the order StopPodSandbox and
//! RemovePodSandbox take (containers first, the infra container last, then
//! the shim, then the pod).

use std::sync::Arc;

use super::{PodRecord, Pods};
use crate::container::{ContainerRecord, Containers};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::shim::PodShims;

/// Pod operations that involve the pod's containers.
pub struct Sandboxes {
    pods: Arc<Pods>,
    containers: Arc<Containers>,
    shims: Arc<dyn PodShims>,
    /// `drop_infra_ctr`: no infra container unless the pod shares its PID
    /// namespace.
    drop_infra: bool,
}

impl Sandboxes {
    /// Pod operations over these pods and containers.
    pub fn new(
        pods: Arc<Pods>,
        containers: Arc<Containers>,
        shims: Arc<dyn PodShims>,
        drop_infra: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            pods,
            containers,
            shims,
            drop_infra,
        })
    }

    /// RunPodSandbox: the pod, then its infra container when it needs one;
    /// a pod whose infra container fails is removed again.
    pub async fn run(
        self: &Arc<Self>,
        config: crio_api::cri::PodSandboxConfig,
        handler: String,
    ) -> Result<String> {
        let id = self.pods.run(config, handler).await?;
        self.announce(&id, EventKind::Created);
        let needs_infra = |p: &PodRecord| p.shares_pid() || !self.drop_infra;
        if let Some(pod) = self.pods.get(&id).filter(needs_infra) {
            self.shims.check()?;
            // In a task of its own: a kubelet giving up does not cut it short.
            let this = self.clone();
            let infra = async move {
                let result = this.containers.run_infra(&pod).await;
                if result.is_err() {
                    this.remove(&pod.id).await?;
                }
                result
            };
            tokio::spawn(tracing::Instrument::in_current_span(infra))
                .await
                .map_err(|e| Error::Internal(format!("infra container: {e}")))??;
        }
        self.announce(&id, EventKind::Started);
        Ok(id)
    }

    /// After a reboot nothing of any pod runs any more: each is stopped and
    /// removed (its network released, its containers' storage removed), as
    /// CRI-O wipes its containers after a reboot; the kubelet makes the
    /// pods anew. A pod that cannot be removed stays, not ready, for the
    /// kubelet's own stop and remove.
    pub async fn wipe(&self) {
        for pod in self.pods.list() {
            let id = pod.id.to_string();
            let result = match self.stop(&id).await {
                Ok(()) => self.remove(&id).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => tracing::info!(pod = %id, "removed: it did not survive the reboot"),
                Err(e) => tracing::warn!(pod = %id, "left after the reboot: {e}"),
            }
        }
    }

    /// Publishes that pod `id` reached `kind`.
    fn announce(&self, id: &str, kind: EventKind) {
        if let Some(pod) = self.pods.get(id) {
            self.containers.announce_pod(&pod, kind);
        }
    }

    /// A pod's containers, its infra container (if any) last.
    fn with_infra_last(&self, pod_id: &str) -> Vec<ContainerRecord> {
        let mut all = self.containers.of_pod(pod_id);
        all.extend(self.containers.infra_of(pod_id));
        all
    }

    /// StopPodSandbox: its containers (infra last), then the pod.
    pub async fn stop(&self, id: &str) -> Result<()> {
        if let Some(pod) = self.pods.get(id).filter(|_| self.shims.check().is_ok()) {
            for c in self.with_infra_last(&pod.id) {
                self.containers.stop(&c.id, 0).await?;
            }
        }
        self.pods.stop(id).await?;
        self.announce(id, EventKind::Stopped);
        Ok(())
    }

    /// RemovePodSandbox: its containers (infra last), its shim, then the pod.
    pub async fn remove(&self, id: &str) -> Result<()> {
        if let Some(pod) = self.pods.get(id).filter(|_| self.shims.check().is_ok()) {
            for c in self.with_infra_last(&pod.id) {
                self.containers.remove(&c.id).await?;
            }
            self.shims
                .shutdown(&pod.id, &self.pods.run_dir(&pod.id), &pod.cgroup_parent())
                .await;
        }
        let last = self.pods.get(id);
        self.pods.remove(id).await?;
        if let Some(mut pod) = last {
            pod.state = super::PodState::NotReady;
            self.containers.announce_pod(&pod, EventKind::Stopped);
            self.containers.announce_pod(&pod, EventKind::Deleted);
        }
        Ok(())
    }
}
