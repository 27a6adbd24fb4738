//! Disk usage of a directory tree: bytes and inodes, hard links counted once.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes and inodes used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of allocated blocks.
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// Walks `root` without following symlinks; unreadable parts count as empty.
pub fn usage(root: &Path) -> Usage {
    let mut seen = HashSet::new();
    let mut total = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total.inodes += 1;
        total.bytes += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hard_links_once() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(tmp.path().join("a"), tmp.path().join("b")).unwrap();
        fs::create_dir(tmp.path().join("d")).unwrap();
        let u = usage(tmp.path());
        assert_eq!(u.inodes, 3);
        assert!(u.bytes >= 10_000, "{u:?}");
        assert_eq!(usage(&tmp.path().join("missing")), Usage::default());
    }
}
