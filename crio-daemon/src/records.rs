//! The in-memory index of records (pods, containers) by ID, shared by the
//! request handlers; the files on disk are written by the owners.
//!
//! Readers take the index's lock only to copy what they need: no file is
//! written under it. A changed record is in memory at once, and its file is
//! written after, under a lock of that record alone that keeps its writes
//! in order (an older version is never written over a newer one) and never
//! brings a removed record back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// The disk side of one record: the last version written, and whether the
/// record was removed (nothing is written after).
#[derive(Debug, Default)]
struct Writer {
    written: u64,
    removed: bool,
}

#[derive(Debug)]
struct Slot<T> {
    record: T,
    /// Bumped by every change in memory.
    version: u64,
    writer: Arc<Mutex<Writer>>,
}

impl<T> Slot<T> {
    fn new(record: T) -> Self {
        Self {
            record,
            version: 1,
            writer: Arc::default(),
        }
    }
}

/// Runs `write` (a record's fsync'd write) without holding up the async
/// executor: on a multi-thread runtime the worker hands its other tasks
/// over first (`block_in_place`); elsewhere (a current-thread runtime, a
/// plain thread) it just runs.
pub fn durable<R>(write: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

/// Records by ID.
#[derive(Debug)]
pub struct Records<T>(Mutex<BTreeMap<String, Slot<T>>>);

/// A change made in memory, to be written to disk.
#[must_use = "a change is durable only once persisted"]
pub struct Change<T> {
    /// The record as changed.
    pub record: T,
    /// None when nothing changed (nothing to write).
    version: Option<u64>,
    writer: Arc<Mutex<Writer>>,
}

impl<T> Change<T> {
    /// Writes the changed record with `write`, unless the record was
    /// removed or a newer version of it was written meanwhile.
    pub fn persist<E>(&self, write: impl FnOnce(&T) -> Result<(), E>) -> Result<(), E> {
        let Some(version) = self.version else {
            return Ok(());
        };
        let mut writer = self.writer.lock();
        if writer.removed || writer.written >= version {
            return Ok(());
        }
        write(&self.record)?;
        writer.written = version;
        Ok(())
    }
}

impl<T: Clone> Records<T> {
    /// An index of `records`.
    pub fn new(records: BTreeMap<String, T>) -> Self {
        Self(Mutex::new(
            records
                .into_iter()
                .map(|(id, r)| (id, Slot::new(r)))
                .collect(),
        ))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot<T>>> {
        self.0.lock()
    }

    /// Every record, in ID order.
    pub fn list(&self) -> Vec<T> {
        self.lock().values().map(|s| s.record.clone()).collect()
    }

    /// What `f` makes of each record it keeps, in ID order, read in place
    /// (no record is cloned: listings are polled often).
    pub fn filter_map<U>(&self, mut f: impl FnMut(&T) -> Option<U>) -> Vec<U> {
        self.lock().values().filter_map(|s| f(&s.record)).collect()
    }

    /// The record with this ID, or the only one whose ID starts with it (at
    /// least 3 characters, like crictl's short IDs).
    pub fn get(&self, id: &str) -> Option<T> {
        let records = self.lock();
        if let Some(s) = records.get(id) {
            return Some(s.record.clone());
        }
        if id.len() < 3 {
            return None;
        }
        let mut matches = records
            .range(id.to_string()..)
            .take_while(|(k, _)| k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, s)), None) => Some(s.record.clone()),
            _ => None,
        }
    }

    /// Adds or replaces a record (already written by the caller).
    pub fn insert(&self, id: &str, record: T) {
        let mut records = self.lock();
        match records.get_mut(id) {
            Some(s) => {
                s.record = record;
                s.version += 1;
            }
            None => {
                records.insert(id.to_string(), Slot::new(record));
            }
        }
    }

    /// Forgets a record; a write of it under way ends first, and none
    /// follows.
    pub fn remove(&self, id: &str) {
        let slot = self.lock().remove(id);
        if let Some(s) = slot {
            s.writer.lock().removed = true;
        }
    }

    /// Changes a record that still exists in memory (`f` says whether it
    /// changed anything); None when it is gone. The change is to be
    /// persisted by the caller, off this index's lock.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut T) -> bool) -> Option<Change<T>> {
        let mut records = self.lock();
        let slot = records.get_mut(id)?;
        let version = f(&mut slot.record).then(|| {
            slot.version += 1;
            slot.version
        });
        Some(Change {
            record: slot.record.clone(),
            version,
            writer: slot.writer.clone(),
        })
    }
}

/// One async lock per object ID: calls on the same object run one at a
/// time, calls on different ones in parallel.
#[derive(Debug, Default)]
pub struct Locks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Locks {
    /// The lock of `id`.
    pub fn of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().entry(id.to_string()).or_default().clone()
    }

    /// Forgets the lock of an object that is gone.
    pub fn forget(&self, id: &str) {
        self.0.lock().remove(id);
    }
}

/// A request's canonical form, for telling a retry from a different
/// request: JSON with every object's keys sorted, since the label and
/// annotation maps of a request iterate in a random order per instance.
pub fn canonical(request: &impl serde::Serialize) -> String {
    serde_json::to_value(request)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_ignore_map_order() {
        let parse = || crio_api::cri::PodSandboxConfig {
            labels: (0..30)
                .map(|i| (format!("key{i}"), format!("value{i}")))
                .collect(),
            log_directory: "/var/log/pods".into(),
            ..Default::default()
        };
        let first = parse();
        // Each map has a hasher of its own: the plain serialisation of an
        // equal request differs (what made retries look like new requests).
        assert!(
            (0..20).any(|_| serde_json::to_string(&parse()).unwrap()
                != serde_json::to_string(&first).unwrap())
        );
        for _ in 0..20 {
            assert_eq!(canonical(&parse()), canonical(&first));
        }
        let mut other = parse();
        other.labels.insert("key0".into(), "changed".into());
        assert_ne!(canonical(&other), canonical(&first));
    }

    #[test]
    fn a_write_under_way_blocks_no_reader_and_no_other_record() {
        let r = Arc::new(Records::new(BTreeMap::from([
            ("a".to_string(), 1),
            ("b".to_string(), 2),
        ])));
        let change = r
            .update("a", |v| {
                *v = 10;
                true
            })
            .unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, writing) = std::sync::mpsc::channel::<()>();
        // A write of "a" held up, as by a slow fsync.
        let writer = std::thread::spawn(move || {
            change.persist(|_| {
                started.send(()).unwrap();
                held.recv().unwrap();
                Ok::<(), ()>(())
            })
        });
        writing.recv().unwrap();
        assert_eq!(r.list(), [10, 2], "the change is read at once");
        r.update("b", |v| {
            *v = 3;
            true
        })
        .unwrap()
        .persist(|_| Ok::<(), ()>(()))
        .unwrap();
        assert_eq!(r.get("b"), Some(3));
        release.send(()).unwrap();
        writer.join().unwrap().unwrap();
    }

    #[test]
    fn exact_and_prefix_lookups() {
        let r = Records::new(BTreeMap::from([
            ("abcd1".to_string(), 1),
            ("abcd2".to_string(), 2),
            ("bcde".to_string(), 3),
        ]));
        assert_eq!(r.get("abcd1"), Some(1));
        assert_eq!(r.get("bcd"), Some(3));
        assert_eq!(r.get("abcd"), None, "ambiguous");
        assert_eq!(r.get("bc"), None, "too short");
        r.insert("zzz", 4);
        r.remove("bcde");
        assert_eq!(r.list(), [1, 2, 4]);
        let change = r.update("zzz", |v| {
            *v = 5;
            true
        });
        let mut written = Vec::new();
        let mut write = |v: &i32| {
            written.push(*v);
            Ok::<(), ()>(())
        };
        change.unwrap().persist(&mut write).unwrap();
        assert!(
            r.update("gone", |_| true).is_none(),
            "no removed record back"
        );
        assert_eq!(r.list(), [1, 2, 5]);
        // Writes keep the order of the changes: an older one that comes
        // late is not written over the newer.
        let older = r.update("zzz", |v| {
            *v = 6;
            true
        });
        let newer = r.update("zzz", |v| {
            *v = 7;
            true
        });
        newer.unwrap().persist(&mut write).unwrap();
        older.unwrap().persist(&mut write).unwrap();
        // Nothing changed: nothing written.
        r.update("zzz", |_| false)
            .unwrap()
            .persist(&mut write)
            .unwrap();
        let late = r.update("abcd1", |v| {
            *v = 8;
            true
        });
        r.remove("abcd1");
        late.unwrap().persist(&mut write).unwrap();
        assert_eq!(written, [5, 7], "no write after a removal");
        assert_eq!(r.list(), [2, 7]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_write_runs_on_any_runtime_and_thread() {
        assert_eq!(durable(|| 1), 1);
        let blocking = tokio::task::spawn_blocking(|| durable(|| 2));
        assert_eq!(blocking.await.unwrap(), 2);
        let current = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async { durable(|| 3) })
        });
        assert_eq!(current.join().unwrap(), 3);
    }
}
