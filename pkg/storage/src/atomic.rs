//! Crash-safe file replacement: write a temp file, fsync, rename, fsync the
//! directory. A reader sees the old content or the new, never a torn file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of temp files; start-up removes leftovers with it.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `data` atomically and durably. Each call writes its
/// own temp file, so concurrent writes of one path (threads of a process,
/// or processes) each land whole and the last rename wins.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut f) = create_temp(dir, &path.file_name().unwrap_or_default().to_string_lossy())?;
    let result = (|| {
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a temp file for `name` in `dir` that no other call uses:
/// `.NAME.PID-N.tmp`, created exclusively (a leftover of a crashed process
/// that had the same pid is skipped, never reused).
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, fs::File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}-{n}{TMP_SUFFIX}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes temp-file leftovers of interrupted writes in `dir`.
pub fn remove_debris(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_cleans() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("rec.json");
        write(&p, b"one").unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        fs::write(tmp.path().join(".rec.json.99.tmp"), b"torn").unwrap();
        assert_eq!(remove_debris(tmp.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_writes_of_one_file_never_tear_it() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("rec.json");
        let content = |i: usize| vec![b'a' + (i % 26) as u8; 64 * 1024 + i];
        let version = |data: &[u8]| data.len().checked_sub(64 * 1024);
        write(&p, &content(0)).unwrap();
        let done = AtomicBool::new(false);
        let (failures, torn) = std::thread::scope(|s| {
            let writers: Vec<_> = (0..8)
                .map(|t| {
                    let p = &p;
                    s.spawn(move || {
                        (0..40)
                            .filter(|round| write(p, &content(t * 40 + round)).is_err())
                            .count()
                    })
                })
                .collect();
            // A reader must see one whole version each time, never a mix or none.
            let reader = s.spawn(|| {
                let mut torn = 0;
                while !done.load(Ordering::Relaxed) {
                    let whole = fs::read(&p)
                        .ok()
                        .is_some_and(|d| version(&d).is_some_and(|i| d == content(i)));
                    torn += usize::from(!whole);
                }
                torn
            });
            let failures: usize = writers.into_iter().map(|w| w.join().unwrap_or(1)).sum();
            done.store(true, Ordering::Relaxed);
            (failures, reader.join().unwrap())
        });
        assert_eq!(failures, 0, "writes failed");
        assert_eq!(torn, 0, "reads of a torn or missing file");
        let data = fs::read(&p).unwrap();
        assert_eq!(Some(data.clone()), version(&data).map(content));
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "temp files left"
        );
    }
}
