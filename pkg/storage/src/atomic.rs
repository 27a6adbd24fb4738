//! Crash-safe file replacement: write a temp file, fsync, rename, fsync the
//! directory. A reader sees the old content or the new, never a torn file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Suffix of temp files; start-up removes leftovers with it.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `data` atomically and durably.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}{TMP_SUFFIX}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
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
}
