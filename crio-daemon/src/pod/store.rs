//! The pod records (on disk and in memory) and the reservation of pod
//! names, which lasts as long as the pod.

use tokio::sync::watch;

use super::{PodRecord, Pods};
use crate::error::{Error, Result};
use crate::ids::Id;

/// Outcome of a RunPodSandbox, shared with retries.
pub(super) type RunOutcome = Option<Result<String>>;

/// A reserved pod name: the pod's ID, its request (canonical JSON) and the
/// outcome of its RunPodSandbox.
pub(super) struct Reservation {
    pub(super) id: Id,
    pub(super) config: String,
    pub(super) done: watch::Receiver<RunOutcome>,
    /// Where the creation is, for a retry that finds it under way.
    pub(super) stage: crate::steps::Stage,
}

impl Pods {
    /// Every pod record.
    pub fn list(&self) -> Vec<PodRecord> {
        self.records.list()
    }

    /// What `f` makes of each pod it keeps, without cloning the records.
    pub fn filter_map<U>(&self, f: impl FnMut(&PodRecord) -> Option<U>) -> Vec<U> {
        self.records.filter_map(f)
    }

    /// The pod with this ID, or the only pod whose ID starts with it.
    pub fn get(&self, id: &str) -> Option<PodRecord> {
        self.records.get(id)
    }

    pub(super) fn save(&self, record: &PodRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(record).map_err(Error::internal)?;
        let path = self.records_dir.join(format!("{}.json", record.id));
        crate::records::durable(|| crio_storage::atomic::write(&path, &data))
            .map_err(|e| Error::Internal(format!("save pod {}: {e}", record.id)))?;
        self.records.insert(&record.id, record.clone());
        Ok(())
    }

    /// Records how far RunPodSandbox of `record` got.
    pub(super) fn save_pending(&self, record: &PodRecord) -> Result<()> {
        let data = serde_json::to_vec(record).map_err(Error::internal)?;
        let path = self.pending_file(&record.id);
        crate::records::durable(|| crio_storage::atomic::write(&path, &data))
            .map_err(|e| Error::Internal(format!("save pod {} in progress: {e}", record.id)))
    }

    pub(super) fn pending_file(&self, id: &Id) -> std::path::PathBuf {
        self.pending_dir.join(format!("{id}.json"))
    }

    /// Forgets a pod: its record, name and lock.
    pub(super) fn forget(&self, record: &PodRecord) {
        self.records.remove(&record.id);
        self.reservations.lock().remove(&record.name);
        self.locks.forget(&record.id);
    }
}
