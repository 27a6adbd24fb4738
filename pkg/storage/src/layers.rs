//! The layer store: each layer unpacked once into its own directory, keyed
//! by its chain ID, so images that share a base share it on disk.
//!
//! ```text
//! <root>/layers/<chain hex>/diff/        the layer's files (overlay lower dir)
//! <root>/layers/<chain hex>/layer.json   LayerInfo; present = complete
//! <root>/layers/l/<short>                -> ../<chain hex>/diff (short mount names)
//! <root>/layers/tmp/                     layers being unpacked; emptied at start
//! ```

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::unpack::{Limits, UnpackError, unpack};

/// Why a layer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The tar stream could not be unpacked.
    #[error("unpack layer {diff_id}: {source}")]
    Unpack {
        /// The layer's expected diff ID.
        diff_id: String,
        /// The cause.
        source: UnpackError,
    },
    /// The uncompressed content does not match the image config.
    #[error("layer content digest {actual} does not match diff ID {expected}")]
    DiffIdMismatch {
        /// From the image config.
        expected: String,
        /// Computed while unpacking.
        actual: String,
    },
    /// Filesystem failure.
    #[error("layer store {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the store knows about one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// `sha256:` chain ID: the key.
    pub chain_id: String,
    /// `sha256:` digest of the uncompressed tar.
    pub diff_id: String,
    /// Chain ID of the layer below, if any.
    pub parent: Option<String>,
    /// Bytes of file content.
    pub size: u64,
    /// Short link name under `l/`.
    pub link: String,
}

/// Chain IDs of a stack of diff IDs, lowest first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = match out.last() {
            None => d.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {d}").as_bytes()))
            ),
        };
        out.push(id);
    }
    out
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Layers on disk.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    /// Opens (creating) the store in `dir` and removes half-unpacked layers
    /// left by a crash.
    pub fn open(dir: &Path) -> Result<Self, LayerError> {
        let tmp = dir.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        for sub in [dir.to_path_buf(), dir.join("l"), tmp] {
            fs::create_dir_all(&sub).map_err(io_err(&sub))?;
        }
        let store = Self {
            dir: dir.to_path_buf(),
        };
        // A layer directory without its record is debris of a crash.
        for entry in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.len() == 64 && !path.join("layer.json").exists() {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(store)
    }

    fn layer_dir(&self, chain_id: &str) -> PathBuf {
        self.dir.join(hex_of(chain_id))
    }

    /// The layer's files, for overlay's lowerdir.
    pub fn diff_dir(&self, chain_id: &str) -> PathBuf {
        self.layer_dir(chain_id).join("diff")
    }

    /// The short path of the layer's files, which keeps mount options small.
    pub fn short_path(&self, info: &LayerInfo) -> PathBuf {
        self.dir.join("l").join(&info.link)
    }

    /// The layer's record, if the layer is complete.
    pub fn get(&self, chain_id: &str) -> Option<LayerInfo> {
        let data = fs::read(self.layer_dir(chain_id).join("layer.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Every complete layer.
    pub fn list(&self) -> Vec<LayerInfo> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let data = fs::read(e.path().join("layer.json")).ok()?;
                serde_json::from_slice(&data).ok()
            })
            .collect()
    }

    /// Unpacks the uncompressed tar `reader` as the layer above `parent`
    /// (a chain ID) and, when given, checks its content against
    /// `expected_diff_id`. Nothing is visible until it is whole; a layer that
    /// another pull completed meanwhile is kept as it is.
    pub fn put(
        &self,
        parent: Option<&str>,
        expected_diff_id: Option<&str>,
        reader: impl Read,
        limits: &Limits,
    ) -> Result<LayerInfo, LayerError> {
        let work = tempfile_dir(&self.dir.join("tmp")).map_err(io_err(&self.dir))?;
        let result = self.unpack_into(&work, parent, expected_diff_id, reader, limits);
        if result.is_err() {
            let _ = fs::remove_dir_all(&work);
        }
        result
    }

    fn unpack_into(
        &self,
        work: &Path,
        parent: Option<&str>,
        expected_diff_id: Option<&str>,
        reader: impl Read,
        limits: &Limits,
    ) -> Result<LayerInfo, LayerError> {
        let diff = work.join("diff");
        fs::create_dir(&diff).map_err(io_err(&diff))?;
        let mut hashing = HashingReader::new(reader);
        let shown = expected_diff_id.unwrap_or("(schema 1 layer)").to_string();
        let unpack_err = |source| LayerError::Unpack {
            diff_id: shown.clone(),
            source,
        };
        let stats = unpack(&mut hashing, &diff, limits).map_err(unpack_err)?;
        // The tar end marker may leave padding unread: the digest covers all.
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| unpack_err(UnpackError::Read(e)))?;
        let diff_id = hashing.digest();
        if let Some(expected) = expected_diff_id.filter(|e| *e != diff_id) {
            return Err(LayerError::DiffIdMismatch {
                expected: expected.to_string(),
                actual: diff_id,
            });
        }
        let chain_id = match parent {
            Some(p) => chain_ids(&[p.to_string(), diff_id.clone()]).remove(1),
            None => diff_id.clone(),
        };
        if let Some(existing) = self.get(&chain_id) {
            let _ = fs::remove_dir_all(work);
            return Ok(existing);
        }
        let info = LayerInfo {
            link: short_name(&chain_id),
            chain_id,
            diff_id,
            parent: parent.map(str::to_string),
            size: stats.bytes,
        };
        let record = serde_json::to_vec_pretty(&info).expect("layer info serialises");
        atomic::write(&work.join("layer.json"), &record).map_err(io_err(work))?;
        let target = self.layer_dir(&info.chain_id);
        if let Err(e) = fs::rename(work, &target) {
            // Another pull finished the same layer first: keep that one.
            let _ = fs::remove_dir_all(work);
            return self.get(&info.chain_id).ok_or_else(|| io_err(&target)(e));
        }
        let link = self.dir.join("l").join(&info.link);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(
            Path::new("..").join(hex_of(&info.chain_id)).join("diff"),
            &link,
        )
        .map_err(io_err(&link))?;
        Ok(info)
    }

    /// Deletes a layer. Callers make sure no image or container uses it.
    pub fn remove(&self, chain_id: &str) -> Result<(), LayerError> {
        if let Some(info) = self.get(chain_id) {
            let _ = fs::remove_file(self.dir.join("l").join(info.link));
        }
        let dir = self.layer_dir(chain_id);
        // Drop the record first: a crash mid-way leaves debris, not a layer.
        let _ = fs::remove_file(dir.join("layer.json"));
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        }
    }
}

/// A 26-character name derived from the chain ID, like containers/storage's.
fn short_name(chain_id: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(chain_id.as_bytes());
    let mut out = String::with_capacity(26);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for byte in digest.iter() {
        bits = (bits << 8) | u32::from(*byte);
        nbits += 8;
        while nbits >= 5 && out.len() < 26 {
            nbits -= 5;
            out.push(ALPHABET[((bits >> nbits) & 31) as usize] as char);
        }
    }
    out
}

/// A fresh directory under `parent` named after the process and a counter.
fn tempfile_dir(parent: &Path) -> io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("{}-{n}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` of the bytes read so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn digest(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let ids = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(ids[0], "sha256:a");
        assert_eq!(ids[1], digest(b"sha256:a sha256:b"));
    }

    #[test]
    fn put_get_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LayerStore::open(tmp.path()).unwrap();
        let tar = tar_of(&[("hello", b"world")]);
        let d = digest(&tar);
        let info = store
            .put(None, Some(&d), &tar[..], &Limits::default())
            .unwrap();
        assert_eq!(info.chain_id, d);
        assert_eq!(info.size, 5);
        assert_eq!(info.link.len(), 26);
        assert_eq!(
            fs::read(store.short_path(&info).join("hello")).unwrap(),
            b"world"
        );
        assert_eq!(store.list(), vec![info.clone()]);
        // A second put of the same layer keeps the first.
        assert_eq!(
            store.put(None, None, &tar[..], &Limits::default()).unwrap(),
            info
        );
        // A layer above it is keyed by the chain.
        let top = tar_of(&[("up", b"per")]);
        let above = store
            .put(Some(&d), None, &top[..], &Limits::default())
            .unwrap();
        assert_eq!(above.chain_id, chain_ids(&[d.clone(), digest(&top)])[1]);
        assert_eq!(above.parent.as_deref(), Some(d.as_str()));
        store.remove(&above.chain_id).unwrap();
        store.remove(&d).unwrap();
        assert!(store.get(&d).is_none());
        assert!(!store.short_path(&info).exists());
    }

    #[test]
    fn wrong_diff_id_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LayerStore::open(tmp.path()).unwrap();
        let tar = tar_of(&[("x", b"y")]);
        let wrong = digest(b"other");
        let err = store
            .put(None, Some(&wrong), &tar[..], &Limits::default())
            .unwrap_err();
        assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err}");
        assert!(store.list().is_empty());
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn open_removes_debris() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("tmp/123-0/diff")).unwrap();
        let half = tmp.path().join("a".repeat(64));
        fs::create_dir_all(half.join("diff")).unwrap();
        LayerStore::open(tmp.path()).unwrap();
        assert!(!half.exists());
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
    }
}
