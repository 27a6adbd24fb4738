//! The in-memory index of records (pods, containers) by ID, shared by the
//! request handlers; the files on disk are written by the owners.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// Records by ID.
#[derive(Debug, Default)]
pub struct Records<T>(Mutex<BTreeMap<String, T>>);

impl<T: Clone> Records<T> {
    /// An index of `records`.
    pub fn new(records: BTreeMap<String, T>) -> Self {
        Self(Mutex::new(records))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, T>> {
        self.0.lock()
    }

    /// Every record, in ID order.
    pub fn list(&self) -> Vec<T> {
        self.lock().values().cloned().collect()
    }

    /// What `f` makes of each record it keeps, in ID order, read in place
    /// (no record is cloned: listings are polled often).
    pub fn filter_map<U>(&self, f: impl FnMut(&T) -> Option<U>) -> Vec<U> {
        self.lock().values().filter_map(f).collect()
    }

    /// The record with this ID, or the only one whose ID starts with it (at
    /// least 3 characters, like crictl's short IDs).
    pub fn get(&self, id: &str) -> Option<T> {
        let records = self.lock();
        if let Some(r) = records.get(id) {
            return Some(r.clone());
        }
        if id.len() < 3 {
            return None;
        }
        let mut matches = records
            .range(id.to_string()..)
            .take_while(|(k, _)| k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, r)), None) => Some(r.clone()),
            _ => None,
        }
    }

    /// Adds or replaces a record.
    pub fn insert(&self, id: &str, record: T) {
        self.lock().insert(id.to_string(), record);
    }

    /// Forgets a record.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Replaces a record that still exists, running `persist` under the
    /// index's lock first, so a record removed meanwhile is never brought
    /// back; false when it was gone.
    pub fn update<E>(
        &self,
        id: &str,
        record: T,
        persist: impl FnOnce() -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut records = self.lock();
        if !records.contains_key(id) {
            return Ok(false);
        }
        persist()?;
        records.insert(id.to_string(), record);
        Ok(true)
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
        assert_eq!(r.update("zzz", 5, || Ok::<(), ()>(())), Ok(true));
        let mut ran = false;
        assert_eq!(
            r.update("gone", 6, || {
                ran = true;
                Ok::<(), ()>(())
            }),
            Ok(false)
        );
        assert!(!ran, "nothing is written for a removed record");
        assert_eq!(r.list(), [1, 2, 5]);
    }
}
