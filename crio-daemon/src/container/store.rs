//! The container records (on disk and in memory) and the reservation of
//! container names while a create is under way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{ContainerRecord, Containers};
use crate::error::{Error, Result};
use crate::ids::Id;

/// Outcome of a CreateContainer, shared with its retries.
pub(super) type CreateOutcome = Option<Result<String>>;

/// Names being created: the request (canonical JSON), its outcome to come
/// and the stage it is at.
pub(super) type Pending =
    Mutex<HashMap<String, (String, watch::Receiver<CreateOutcome>, crate::steps::Stage)>>;

/// Frees a name reserved for a create when the create ends, however it ends.
pub(super) struct Reserved<'a>(&'a Pending, String);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

/// What reserving a name for a create found.
pub(super) enum Reservation<'a> {
    /// A container of this name and request exists: its ID.
    Exists(String),
    /// The same request is being created: its outcome to come.
    InFlight(watch::Receiver<CreateOutcome>),
    /// Reserved for this create: send the outcome, keep the guard till
    /// done, move the stage on.
    Mine(
        watch::Sender<CreateOutcome>,
        Reserved<'a>,
        crate::steps::Stage,
    ),
}

impl Containers {
    /// Reserves `name` for a create of `wanted` (a request's canonical
    /// form): a retry of a request gets its container, another request for
    /// a taken name is refused.
    pub(super) fn reserve(&self, name: &str, wanted: String) -> Result<Reservation<'_>> {
        let mut pending = self.pending.lock();
        let holder = self.records.filter_map(|r| {
            (r.name == name).then(|| {
                let same = crate::records::canonical(&r.config) == wanted;
                (r.id.clone(), same)
            })
        });
        if let Some((id, same)) = holder.into_iter().next() {
            // The same request again (a retry whose answer was lost) gets
            // the same container; another one is refused.
            if same {
                return Ok(Reservation::Exists(id.to_string()));
            }
            return Err(Error::AlreadyExists(format!(
                "container name {name:?} is reserved by {id}"
            )));
        }
        match pending.get(name) {
            Some((config, done, stage)) if *config == wanted => {
                stage.stalled();
                Ok(Reservation::InFlight(done.clone()))
            }
            Some(_) => Err(Error::AlreadyExists(format!(
                "container name {name:?} is reserved by a CreateContainer in progress"
            ))),
            None => {
                let (tx, rx) = watch::channel(None);
                let stage = crate::steps::Stage::new("container creating");
                pending.insert(name.to_string(), (wanted, rx, stage.clone()));
                Ok(Reservation::Mine(
                    tx,
                    Reserved(&self.pending, name.to_string()),
                    stage,
                ))
            }
        }
    }

    /// Writes a new record.
    pub(super) fn save_new(&self, r: &ContainerRecord) -> Result<()> {
        write_record(&self.records_dir, r)?;
        self.records.insert(&r.id, r.clone());
        self.announce_state(r);
        Ok(())
    }

    /// Changes a container's record in memory (`f` says whether it changed
    /// it), then on disk, off the index's lock; the record as changed, or
    /// NotFound when the container was removed meanwhile.
    pub(super) fn change(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord) -> bool,
    ) -> Result<ContainerRecord> {
        let change = self
            .records
            .update(id, f)
            .ok_or_else(|| Error::not_found("container", id))?;
        change.persist(|r| write_record(&self.records_dir, r))?;
        self.announce_state(&change.record);
        Ok(change.record)
    }

    /// Every container but infra containers.
    pub fn list(&self) -> Vec<ContainerRecord> {
        let mut all = self.records.list();
        all.retain(|r| !r.infra);
        all
    }

    /// What `f` makes of each container (infra containers excepted) it
    /// keeps, without cloning the records.
    pub fn filter_map<U>(&self, mut f: impl FnMut(&ContainerRecord) -> Option<U>) -> Vec<U> {
        self.records
            .filter_map(|r| if r.infra { None } else { f(r) })
    }

    /// A record by ID or unique prefix.
    pub fn get(&self, id: &str) -> Option<ContainerRecord> {
        self.records.get(id)
    }

    /// A record by ID or unique prefix, or NotFound.
    pub(super) fn existing(&self, id: &str) -> Result<ContainerRecord> {
        self.get(id)
            .ok_or_else(|| Error::not_found("container", id))
    }

    /// The infra container of a pod, if it has one.
    pub fn infra_of(&self, pod_id: &str) -> Option<ContainerRecord> {
        self.records
            .filter_map(|r| (r.infra && r.pod_id == pod_id).then(|| r.clone()))
            .pop()
    }

    /// The containers of a pod, its infra container excepted.
    pub fn of_pod(&self, pod_id: &str) -> Vec<ContainerRecord> {
        self.list()
            .into_iter()
            .filter(|r| r.pod_id == pod_id)
            .collect()
    }

    /// The bundle directory of a container.
    pub(super) fn bundle(&self, id: &Id) -> PathBuf {
        self.run_dir.join(id.as_str())
    }

    /// Where a container's root filesystem is mounted (in its bundle).
    pub fn rootfs_dir(&self, id: &Id) -> PathBuf {
        self.bundle(id).join("rootfs")
    }

    /// The writable layer (the overlay's upper dir) of a container.
    pub fn upper_dir(&self, id: &Id) -> PathBuf {
        self.records_dir.join(id.as_str()).join("upper")
    }

    /// Removes what a container had: record, rootfs, bundle, directory.
    pub(super) fn cleanup(&self, id: &Id) {
        // Forgotten first: a concurrent refresh then cannot write it back.
        let gone = self.records.get(id);
        self.records.remove(id);
        let bundle = self.bundle(id);
        self.rootfs.release(&bundle.join("rootfs"));
        let _ = std::fs::remove_dir_all(&bundle);
        let _ = std::fs::remove_dir_all(self.records_dir.join(id.as_str()));
        self.locks.forget(id);
        if let Some(r) = gone {
            self.announce(&r, crate::events::EventKind::Deleted);
        }
    }
}

/// Writes a container's record durably (temp file, fsync, rename).
pub(super) fn write_record(records_dir: &Path, r: &ContainerRecord) -> Result<()> {
    let dir = records_dir.join(r.id.as_str());
    let data = serde_json::to_vec_pretty(r).map_err(Error::internal)?;
    crate::records::durable(|| crio_storage::atomic::write(&dir.join("record.json"), &data))
        .map_err(Error::internal)
}
