//! Image records: one JSON file per image, written atomically, indexed in
//! memory. A tag names exactly one image: tagging moves it.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::{atomic, dirs};

/// One stored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Digest of the config: the image ID.
    pub id: Digest,
    /// Fully qualified `registry/repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:` names of the manifests pulled.
    pub repo_digests: Vec<String>,
    /// Bytes of the compressed layers and config, as the registry served them.
    pub size: u64,
    /// Chain IDs of the layers, lowest first.
    pub layers: Vec<Digest>,
    /// The image configuration document.
    pub config: serde_json::Value,
    /// Never removed by RemoveImage or GC (the pause image).
    pub pinned: bool,
    /// When it was pulled, nanoseconds since the epoch.
    pub pulled_at: i64,
}

impl ImageRecord {
    /// The `User` of the image config ("" when unset).
    pub fn user(&self) -> &str {
        self.config["config"]["User"].as_str().unwrap_or("")
    }
}

/// Why an image record operation failed.
#[derive(Debug, thiserror::Error)]
#[error("image store {path}: {source}")]
pub struct ImageStoreError {
    path: PathBuf,
    source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> ImageStoreError + '_ {
    move |source| ImageStoreError {
        path: path.to_path_buf(),
        source,
    }
}

/// The records, on disk and in memory.
#[derive(Debug)]
pub struct ImageStore {
    dir: PathBuf,
    /// Held by every change for its whole read-modify-write (fsync
    /// included); reads take only `records`, briefly.
    changing: Mutex<()>,
    records: Mutex<BTreeMap<Digest, ImageRecord>>,
}

/// What [`ImageStore::modify`] does with a record after its edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Leave the record as it was.
    Keep,
    /// Store the edited record.
    Write,
    /// Delete the image's record.
    Remove,
}

fn file_name(id: &Digest) -> String {
    format!("{}.json", id.hex())
}

impl ImageStore {
    /// Loads every record in `dir`, removing leftovers of interrupted writes
    /// and records that do not parse.
    pub fn open(dir: &Path) -> Result<Self, ImageStoreError> {
        dirs::ensure(dir, dirs::PRIVATE).map_err(err(dir))?;
        atomic::remove_debris(dir).map_err(err(dir))?;
        let mut records = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(err(dir))?.flatten() {
            let path = entry.path();
            match fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<ImageRecord>(&d).ok())
            {
                Some(r) => {
                    records.insert(r.id.clone(), r);
                }
                None => {
                    tracing::warn!(path = %path.display(), "removing unreadable image record");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            changing: Mutex::new(()),
            records: Mutex::new(records),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Digest, ImageRecord>> {
        self.records.lock()
    }

    /// Serialises changes: one read-modify-write of the records at a time.
    fn changing(&self) -> MutexGuard<'_, ()> {
        self.changing.lock()
    }

    fn write(&self, record: &ImageRecord) -> Result<(), ImageStoreError> {
        let path = self.dir.join(file_name(&record.id));
        let data = serde_json::to_vec_pretty(record).expect("image record serialises");
        atomic::write(&path, &data).map_err(err(&path))
    }

    /// Every image.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.lock().values().cloned().collect()
    }

    /// The image with this exact ID.
    pub fn get(&self, id: &Digest) -> Option<ImageRecord> {
        self.lock().get(id).cloned()
    }

    /// The image a name refers to: its ID (with or without `sha256:`), a
    /// unique ID prefix of at least 3 characters, a repo tag or a repo digest.
    pub fn find(&self, name: &str) -> Option<ImageRecord> {
        let records = self.lock();
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if let Some(r) = Digest::parse(&format!("sha256:{hex}"))
            .ok()
            .and_then(|id| records.get(&id))
        {
            return Some(r.clone());
        }
        if let Some(r) = records
            .values()
            .find(|r| r.repo_tags.iter().chain(&r.repo_digests).any(|t| t == name))
        {
            return Some(r.clone());
        }
        if hex.len() >= 3 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = records.values().filter(|r| r.id.hex().starts_with(hex));
            if let (Some(r), None) = (matches.next(), matches.next()) {
                return Some(r.clone());
            }
        }
        None
    }

    /// Stores `record`, merging names into an existing image of the same ID;
    /// its tags are taken from any other image that held them.
    pub fn add(&self, record: ImageRecord) -> Result<ImageRecord, ImageStoreError> {
        let _changing = self.changing();
        let records = self.lock();
        let mut changed = Vec::new();
        for other in records.values().filter(|r| r.id != record.id) {
            if other.repo_tags.iter().any(|t| record.repo_tags.contains(t)) {
                let mut other = other.clone();
                other.repo_tags.retain(|t| !record.repo_tags.contains(t));
                changed.push(other);
            }
        }
        let merged = match records.get(&record.id) {
            Some(existing) => {
                let mut m = existing.clone();
                for t in &record.repo_tags {
                    if !m.repo_tags.contains(t) {
                        m.repo_tags.push(t.clone());
                    }
                }
                for d in &record.repo_digests {
                    if !m.repo_digests.contains(d) {
                        m.repo_digests.push(d.clone());
                    }
                }
                m.pinned |= record.pinned;
                m
            }
            None => record,
        };
        // Reads are not held up by the writes below.
        drop(records);
        // The new record first: a crash in between leaves a tag on two
        // images, which the next add of either repairs.
        self.write(&merged)?;
        self.lock().insert(merged.id.clone(), merged.clone());
        for c in changed {
            self.write(&c)?;
            self.lock().insert(c.id.clone(), c);
        }
        Ok(merged)
    }

    /// Edits the record of image `id` in one step: `edit` sees the current
    /// record and says what becomes of it, and no other change of the store
    /// runs in between, so concurrent edits (two untags) neither lose an
    /// update nor tear the file. `None` when there is no such image,
    /// otherwise what `edit` returned. The edit cannot change the ID.
    pub fn modify<T>(
        &self,
        id: &Digest,
        edit: impl FnOnce(&mut ImageRecord) -> (Edit, T),
    ) -> Result<Option<T>, ImageStoreError> {
        let _changing = self.changing();
        let Some(mut record) = self.get(id) else {
            return Ok(None);
        };
        let (what, out) = edit(&mut record);
        match what {
            Edit::Keep => {}
            Edit::Write => {
                record.id = id.clone();
                self.write(&record)?;
                self.lock().insert(record.id.clone(), record);
            }
            Edit::Remove => self.remove_changing(id)?,
        }
        Ok(Some(out))
    }

    /// Deletes an image record.
    pub fn remove(&self, id: &Digest) -> Result<(), ImageStoreError> {
        let _changing = self.changing();
        self.remove_changing(id)
    }

    fn remove_changing(&self, id: &Digest) -> Result<(), ImageStoreError> {
        let path = self.dir.join(file_name(id));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(&path)(e)),
            _ => {}
        }
        self.lock().remove(id);
        Ok(())
    }

    /// Chain IDs used by some image.
    pub fn layers_in_use(&self) -> HashSet<Digest> {
        self.lock()
            .values()
            .flat_map(|r| r.layers.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: Digest::parse(&format!("sha256:{}", id.repeat(64 / id.len()))).unwrap(),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: vec![],
            size: 1,
            layers: vec![Digest::of(id.as_bytes())],
            config: serde_json::json!({"config": {"User": "tester"}}),
            pinned: false,
            pulled_at: 0,
        }
    }

    #[test]
    fn add_find_move_tags_and_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let a = store.add(record("a", &["r/x:1", "r/x:latest"])).unwrap();
        assert_eq!(a.user(), "tester");
        assert_eq!(store.find("r/x:1").unwrap().id, a.id);
        assert_eq!(store.find(a.id.as_str()).unwrap().id, a.id);
        assert_eq!(store.find(a.id.hex()).unwrap().id, a.id);
        assert_eq!(store.find("aaa").unwrap().id, a.id);
        assert!(store.find("aa").is_none());
        assert!(store.find("r/x:2").is_none());

        let b = store.add(record("b", &["r/x:latest"])).unwrap();
        assert_eq!(store.get(&a.id).unwrap().repo_tags, ["r/x:1"]);
        assert_eq!(store.find("r/x:latest").unwrap().id, b.id);

        let again = store.add(record("a", &["r/x:2"])).unwrap();
        assert_eq!(again.repo_tags, ["r/x:1", "r/x:2"]);

        let reopened = ImageStore::open(tmp.path()).unwrap();
        assert_eq!(reopened.list(), store.list());
        assert_eq!(reopened.layers_in_use().len(), 2);
        reopened.remove(&a.id).unwrap();
        assert!(ImageStore::open(tmp.path()).unwrap().get(&a.id).is_none());
    }

    #[test]
    fn torn_and_garbage_records_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(".x.json.1.tmp"), b"{").unwrap();
        fs::write(tmp.path().join("bad.json"), b"not json").unwrap();
        // A record whose IDs are paths is unreadable, not half-trusted.
        let mut hostile = serde_json::to_value(record("c", &["r/x:1"])).unwrap();
        hostile["layers"][0] = serde_json::json!(format!("{}/diff/x", Digest::of(b"c")));
        fs::write(tmp.path().join("c.json"), hostile.to_string()).unwrap();
        let mut hostile = serde_json::to_value(record("d", &["r/x:2"])).unwrap();
        hostile["id"] = serde_json::json!("sha256:../../d");
        fs::write(tmp.path().join("d.json"), hostile.to_string()).unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        assert!(store.list().is_empty());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_untags_lose_no_update_and_leave_a_whole_record() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let tags: Vec<String> = (0..16).map(|i| format!("r/x:{i}")).collect();
        let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let mut keep = tag_refs.clone();
        keep.push("r/x:kept");
        let id = store.add(record("a", &keep)).unwrap().id;
        std::thread::scope(|s| {
            for tag in &tags {
                let (store, id) = (&store, &id);
                s.spawn(move || {
                    let untag = |image: &mut ImageRecord| {
                        image.repo_tags.retain(|t| t != tag);
                        (Edit::Write, ())
                    };
                    assert_eq!(store.modify(id, untag).unwrap(), Some(()));
                });
            }
        });
        assert_eq!(store.get(&id).unwrap().repo_tags, ["r/x:kept"]);
        let reopened = ImageStore::open(tmp.path()).unwrap();
        assert_eq!(reopened.get(&id).unwrap().repo_tags, ["r/x:kept"]);
    }

    #[test]
    fn modify_keeps_writes_or_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let id = store.add(record("a", &["r/x:1"])).unwrap().id;
        let missing = store.modify(&Digest::of(b"none"), |_| (Edit::Write, ()));
        assert_eq!(missing.unwrap(), None);
        let kept = store.modify(&id, |r| {
            r.repo_tags.clear();
            (Edit::Keep, r.repo_tags.len())
        });
        assert_eq!(kept.unwrap(), Some(0));
        assert_eq!(store.get(&id).unwrap().repo_tags, ["r/x:1"]);
        store.modify(&id, |_| (Edit::Remove, ())).unwrap();
        assert!(store.get(&id).is_none());
        assert!(ImageStore::open(tmp.path()).unwrap().list().is_empty());
    }
}
