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

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::unpack::{Limits, UnpackError, unpack};
use crate::usage::{Usage, WalkLimits, walk};
use crate::{atomic, dirs};

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
        expected: Digest,
        /// Computed while unpacking.
        actual: Digest,
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

/// What the store knows about one layer. Read back from disk, every field
/// that names a path is validated by its type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Chain ID: the key.
    pub chain_id: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Chain ID of the layer below, if any.
    pub parent: Option<Digest>,
    /// Bytes of file content.
    pub size: u64,
    /// Short link name under `l/`.
    pub link: LinkName,
    /// Disk usage of the layer's files, measured once when it was
    /// unpacked (absent in records of older versions until measured).
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// The name of a layer's short link under `l/`: 26 characters of the
/// base32 alphabet the store generates, so a record cannot point the link
/// (and an overlay's lowerdir) anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkName(String);

const LINK_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const LINK_LEN: usize = 26;

/// A name the store would not generate for a layer link.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a layer link name ({LINK_LEN} characters of A-Z, 2-7)")]
pub struct BadLinkName(String);

impl LinkName {
    /// Parses a link name, refusing anything the store would not generate.
    pub fn parse(s: &str) -> Result<Self, BadLinkName> {
        if s.len() == LINK_LEN && s.bytes().all(|b| LINK_ALPHABET.contains(&b)) {
            Ok(Self(s.to_string()))
        } else {
            Err(BadLinkName(s.to_string()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for LinkName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The chain ID of the layer `diff_id` above the chain `parent`.
pub fn chain_id(parent: &Digest, diff_id: &Digest) -> Digest {
    Digest::of(format!("{parent} {diff_id}").as_bytes())
}

/// Chain IDs of a stack of diff IDs, lowest first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = match out.last() {
            None => d.clone(),
            Some(parent) => chain_id(parent, d),
        };
        out.push(id);
    }
    out
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
            dirs::ensure(&sub, dirs::PRIVATE).map_err(io_err(&sub))?;
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

    fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    /// The layer's files, for overlay's lowerdir.
    pub fn diff_dir(&self, chain_id: &Digest) -> PathBuf {
        self.layer_dir(chain_id).join("diff")
    }

    /// The short path of the layer's files, which keeps mount options small.
    pub fn short_path(&self, info: &LayerInfo) -> PathBuf {
        self.dir.join("l").join(info.link.as_str())
    }

    /// The layer's record, if the layer is complete. A record that does not
    /// parse, or names another layer than its directory, counts as absent.
    pub fn get(&self, chain_id: &Digest) -> Option<LayerInfo> {
        let data = fs::read(self.layer_dir(chain_id).join("layer.json")).ok()?;
        let info: LayerInfo = serde_json::from_slice(&data).ok()?;
        (info.chain_id == *chain_id).then_some(info)
    }

    /// Every complete layer.
    pub fn list(&self) -> Vec<LayerInfo> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let chain_id = Digest::parse(&format!("sha256:{}", name.to_str()?)).ok()?;
                self.get(&chain_id)
            })
            .collect()
    }

    /// Unpacks the uncompressed tar `reader` as the layer above `parent`
    /// (a chain ID) and, when given, checks its content against
    /// `expected_diff_id`. Nothing is visible until it is whole; a layer that
    /// another pull completed meanwhile is kept as it is.
    pub fn put(
        &self,
        parent: Option<&Digest>,
        expected_diff_id: Option<&Digest>,
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
        parent: Option<&Digest>,
        expected_diff_id: Option<&Digest>,
        reader: impl Read,
        limits: &Limits,
    ) -> Result<LayerInfo, LayerError> {
        let diff = work.join("diff");
        fs::create_dir(&diff).map_err(io_err(&diff))?;
        let mut hashing = HashingReader::new(reader);
        let shown = expected_diff_id.map_or_else(|| "(schema 1 layer)".into(), Digest::to_string);
        let unpack_err = |source| LayerError::Unpack {
            diff_id: shown.clone(),
            source,
        };
        let stats = unpack(&mut hashing, &diff, limits).map_err(unpack_err)?;
        // The tar end marker may leave padding unread: the digest covers all.
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| unpack_err(UnpackError::Read(e)))?;
        let diff_id = hashing.digest();
        if let Some(expected) = expected_diff_id.filter(|e| **e != diff_id) {
            return Err(LayerError::DiffIdMismatch {
                expected: expected.clone(),
                actual: diff_id,
            });
        }
        let chain_id = match parent {
            Some(p) => chain_id(p, &diff_id),
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
            parent: parent.cloned(),
            size: stats.bytes,
            usage: Some(walk(&diff, &WalkLimits::default()).usage),
        };
        let record = serde_json::to_vec_pretty(&info).expect("layer info serialises");
        atomic::write(&work.join("layer.json"), &record).map_err(io_err(work))?;
        let target = self.layer_dir(&info.chain_id);
        if let Err(e) = fs::rename(work, &target) {
            // Another pull finished the same layer first: keep that one.
            let _ = fs::remove_dir_all(work);
            return self.get(&info.chain_id).ok_or_else(|| io_err(&target)(e));
        }
        let link = self.short_path(&info);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(
            Path::new("..").join(info.chain_id.hex()).join("diff"),
            &link,
        )
        .map_err(io_err(&link))?;
        Ok(info)
    }

    /// Measures a layer whose record has no usage yet (written by an older
    /// version) and records the figure. The record is swapped in only while
    /// the old one is still there, so a layer being removed stays removed.
    pub fn measure(&self, info: &LayerInfo) -> Result<LayerInfo, LayerError> {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        let dir = self.layer_dir(&info.chain_id);
        let measured = LayerInfo {
            usage: Some(walk(&dir.join("diff"), &WalkLimits::default()).usage),
            ..info.clone()
        };
        let record = serde_json::to_vec_pretty(&measured).expect("layer info serialises");
        let tmp = tempfile_dir(&self.dir.join("tmp")).map_err(io_err(&self.dir))?;
        let staged = tmp.join("layer.json");
        let result = fs::write(&staged, record)
            .and_then(|()| fs::File::open(&staged)?.sync_all())
            .and_then(|()| {
                renameat2(
                    AT_FDCWD,
                    &staged,
                    AT_FDCWD,
                    &dir.join("layer.json"),
                    RenameFlags::RENAME_EXCHANGE,
                )
                .map_err(io::Error::from)
            });
        let _ = fs::remove_dir_all(&tmp);
        result.map_err(io_err(&dir))?;
        Ok(measured)
    }

    /// Deletes a layer. Callers make sure no image or container uses it.
    pub fn remove(&self, chain_id: &Digest) -> Result<(), LayerError> {
        if let Some(info) = self.get(chain_id) {
            let _ = fs::remove_file(self.short_path(&info));
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
fn short_name(chain_id: &Digest) -> LinkName {
    let digest = Sha256::digest(chain_id.as_str().as_bytes());
    let mut out = String::with_capacity(LINK_LEN);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for byte in digest.iter() {
        bits = (bits << 8) | u32::from(*byte);
        nbits += 8;
        while nbits >= 5 && out.len() < LINK_LEN {
            nbits -= 5;
            out.push(LINK_ALPHABET[((bits >> nbits) & 31) as usize] as char);
        }
    }
    LinkName(out)
}

/// A fresh directory under `parent` named after the process and a counter;
/// private, as the layer directory it becomes.
fn tempfile_dir(parent: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("{}-{n}", std::process::id()));
        match fs::DirBuilder::new().mode(dirs::PRIVATE).create(&dir) {
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

    /// The digest of the bytes read so far.
    pub fn digest(&self) -> Digest {
        Digest::from_sha256(self.hasher.clone().finalize().into())
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

    fn digest(data: &[u8]) -> Digest {
        Digest::of(data)
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let (a, b) = (digest(b"a"), digest(b"b"));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], digest(format!("{a} {b}").as_bytes()));
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
        assert_eq!(info.link.as_str().len(), 26);
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
        assert_eq!(above.parent.as_ref(), Some(&d));
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

    /// A layer that ships `fake/layer.json` (whose link leads to the host's
    /// `/`) cannot be made to pass for a layer: the chain ID that would
    /// reach it is not a digest, and records that name another layer than
    /// their directory, or a link that is not the store's, are not read.
    #[test]
    fn records_planted_in_layers_or_on_disk_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LayerStore::open(tmp.path()).unwrap();
        let planted = |chain_id: &str, link: &str| {
            serde_json::json!({
                "chain_id": chain_id, "diff_id": chain_id, "parent": null,
                "size": 0, "link": link,
            })
            .to_string()
        };
        let zero = format!("sha256:{}", "0".repeat(64));
        let record = planted(&zero, "../../../../../../../../../..");
        let tar = tar_of(&[("fake/layer.json", record.as_bytes())]);
        let carrier = store
            .put(None, Some(&digest(&tar)), &tar[..], &Limits::default())
            .unwrap();
        let hostile = format!("{}/diff/fake", carrier.chain_id);
        assert!(
            fs::read(tmp.path().join(&hostile[7..]).join("layer.json")).is_ok(),
            "the planted record is where the hostile ID points"
        );
        let err = Digest::parse(&hostile).unwrap_err().to_string();
        assert!(
            err.contains(&hostile) && err.contains("not a sha256 digest"),
            "{err}"
        );

        // A record whose link is not a link name does not load.
        let bad_link: Result<LayerInfo, _> =
            serde_json::from_str(&planted(&zero, "../../../../../../../../../.."));
        assert!(bad_link.unwrap_err().to_string().contains("link name"));
        let bad_parent = planted(&zero, &"A".repeat(26)).replace("null", "\"sha256:../x\"");
        assert!(serde_json::from_str::<LayerInfo>(&bad_parent).is_err());
        let good = planted(&zero, &"A".repeat(26));
        assert!(serde_json::from_str::<LayerInfo>(&good).is_ok());

        // A well-formed record in another layer's directory is not that layer.
        let other = digest(b"other");
        fs::create_dir(tmp.path().join(other.hex())).unwrap();
        fs::write(tmp.path().join(other.hex()).join("layer.json"), &good).unwrap();
        assert!(store.get(&other).is_none());
        assert_eq!(store.list(), vec![carrier]);
    }

    /// A record of an older version, without a usage figure, is measured
    /// once and rewritten; a layer removed meanwhile is not brought back.
    #[test]
    fn old_records_are_measured_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LayerStore::open(tmp.path()).unwrap();
        let tar = tar_of(&[("a", &[1u8; 5000]), ("b", b"")]);
        let info = store.put(None, None, &tar[..], &Limits::default()).unwrap();
        let usage = info.usage.expect("measured at unpack");
        assert_eq!(usage.inodes, 3, "{usage:?}");
        assert!(usage.bytes >= 5000, "{usage:?}");

        let record = tmp.path().join(info.chain_id.hex()).join("layer.json");
        let mut old: serde_json::Value =
            serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("usage");
        fs::write(&record, old.to_string()).unwrap();
        let legacy = store.get(&info.chain_id).unwrap();
        assert_eq!(legacy.usage, None);
        assert_eq!(store.measure(&legacy).unwrap(), info);
        assert_eq!(store.get(&info.chain_id).unwrap(), info);
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);

        store.remove(&info.chain_id).unwrap();
        assert!(store.measure(&legacy).is_err());
        assert!(store.get(&info.chain_id).is_none());
        assert!(!tmp.path().join(info.chain_id.hex()).exists());
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
