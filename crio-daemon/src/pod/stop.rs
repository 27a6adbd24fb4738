//! StopPodSandbox and RemovePodSandbox of the pod itself (its containers
//! are the `sandbox` module's): network down, /dev/shm unmounted,
//! namespaces unpinned, files and record removed.

use crio_network::netns;

use super::{PodRecord, PodState, Pods};
use crate::error::{Error, Result};

impl Pods {
    /// Undoes what `record` says exists: network, /dev/shm, namespaces.
    pub(super) async fn teardown(&self, record: &PodRecord) {
        self.stop_network(record).await;
        if let Some(shm) = &record.shm {
            let _ = crio_storage::mount::unmount(shm);
        }
        crate::userns::release_pod_files(&self.run_dir(&record.id));
        if let Some(e) = netns::unpin(
            &self.config.runtime.namespaces_dir,
            &record.id,
            &record.kinds(),
        ) {
            tracing::warn!(pod = %record.id, "{e}");
        }
    }

    /// StopPodSandbox: network down, /dev/shm unmounted, state NotReady. An
    /// unknown pod is not an error.
    pub async fn stop(&self, id: &str) -> Result<()> {
        let Some(record) = self.get(id) else {
            return Ok(());
        };
        let lock = self.locks.of(&record.id);
        let _held = lock.lock().await;
        let Some(mut record) = self.get(&record.id) else {
            return Ok(());
        };
        if record.state == PodState::NotReady && record.network.is_none() && record.shm.is_none() {
            return Ok(());
        }
        self.stop_network(&record).await;
        if let Some(shm) = &record.shm {
            crio_storage::mount::unmount(shm)
                .map_err(|e| Error::Internal(format!("unmount {}: {e}", shm.display())))?;
        }
        record.state = PodState::NotReady;
        record.network = None;
        record.shm = None;
        self.save(&record)?;
        tracing::info!(pod = %record.id, "pod stopped");
        Ok(())
    }

    /// RemovePodSandbox: stops the pod if needed, unpins its namespaces,
    /// removes its directories, record and name. An unknown pod is not an error.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let Some(record) = self.get(id) else {
            return Ok(());
        };
        self.stop(&record.id).await?;
        let lock = self.locks.of(&record.id);
        let _held = lock.lock().await;
        let Some(record) = self.get(&record.id) else {
            return Ok(());
        };
        if let Some(e) = netns::unpin(
            &self.config.runtime.namespaces_dir,
            &record.id,
            &record.kinds(),
        ) {
            return Err(Error::Internal(format!("pod {}: {e}", record.id)));
        }
        let dir = self.run_dir(&record.id);
        crate::userns::release_pod_files(&dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Error::Internal(format!("remove {}: {e}", dir.display())))?;
        }
        let file = self.records_dir.join(format!("{}.json", record.id));
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Internal(format!("remove {}: {e}", file.display())));
            }
            _ => {}
        }
        self.forget(&record);
        tracing::info!(pod = %record.id, "pod removed");
        Ok(())
    }
}
