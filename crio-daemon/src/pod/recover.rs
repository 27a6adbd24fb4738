//! A pod store's start: the records read back (a pod whose volatile state
//! a reboot took is not ready), and the RunPodSandbox calls a crash
//! interrupted rolled back.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crio_network::netns::Kind;
use crio_storage::atomic;
use tokio::sync::watch;

use super::store::Reservation;
use super::{PodRecord, PodState, Pods};

/// Records by ID and reservations by name.
type Loaded = (BTreeMap<String, PodRecord>, HashMap<String, Reservation>);

/// The records under `records_dir`, and their names reserved.
pub(super) fn load(records_dir: &Path, run_dir: &Path) -> anyhow::Result<Loaded> {
    atomic::remove_debris(records_dir)?;
    let mut records = BTreeMap::new();
    let mut reservations = HashMap::new();
    for entry in std::fs::read_dir(records_dir)?.flatten() {
        let Some(mut r) = std::fs::read(entry.path())
            .ok()
            .and_then(|d| serde_json::from_slice::<PodRecord>(&d).ok())
        else {
            tracing::warn!(path = %entry.path().display(), "ignoring unreadable pod record");
            continue;
        };
        // After a reboot the volatile state is gone: the pod cannot be
        // ready, but its record stays so stop and remove can clean up
        // (CNI DEL with the cached result releases its addresses).
        if r.state == PodState::Ready && !run_dir.join(r.id.as_str()).exists() {
            tracing::info!(pod = %r.id, "volatile state gone (reboot?): pod is not ready");
            r.state = PodState::NotReady;
            r.shm = None;
            let data = serde_json::to_vec_pretty(&r)?;
            atomic::write(&entry.path(), &data)?;
        }
        let (_, rx) = watch::channel(Some(Ok(r.id.to_string())));
        reservations.insert(
            r.name.clone(),
            Reservation {
                id: r.id.clone(),
                config: crate::records::canonical(&r.config),
                done: rx,
                stage: crate::steps::Stage::new("sandbox ready"),
            },
        );
        records.insert(r.id.to_string(), r);
    }
    Ok((records, reservations))
}

impl Pods {
    /// Rolls back every RunPodSandbox a crash interrupted: CNI DEL (with
    /// the cached result, or without one when the ADD may have been under
    /// way), /dev/shm unmounted, namespaces unpinned, files removed.
    pub async fn recover_pending(&self) {
        let entries: Vec<_> = std::fs::read_dir(&self.pending_dir)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        for entry in entries {
            let path = entry.path();
            let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<PodRecord>(&d).ok())
            else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if self
                .records
                .get(&record.id)
                .is_some_and(|r| r.id == record.id)
            {
                // Made after all (killed between the two writes).
                let _ = std::fs::remove_file(&path);
                continue;
            }
            tracing::info!(pod = %record.id, "rolling back a RunPodSandbox interrupted by a crash");
            if record.network.is_none() && record.kinds().contains(&Kind::Net) {
                self.del_unrecorded_network(&record).await;
            }
            self.roll_back(&record).await;
        }
    }
}
