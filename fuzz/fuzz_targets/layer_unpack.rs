//! A layer tar stream, unpacked into a temp root beside a marker: whatever
//! the archive holds, nothing outside the root is written or changed.
#![no_main]

use std::os::unix::fs::MetadataExt;

use crio_storage::unpack::{Limits, unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let marker = tmp.path().join("marker");
    std::fs::write(&marker, b"host").unwrap();
    let before = std::fs::metadata(&marker).unwrap();
    let limits = Limits {
        max_entries: 1000,
        max_bytes: 1 << 20,
        max_path: 4096,
    };
    let _ = unpack(data, &root, &limits);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "something was made beside the root: {names:?}"
    );
    let after = std::fs::metadata(&marker).unwrap();
    assert_eq!(
        (after.mode(), after.uid(), after.mtime(), after.nlink()),
        (before.mode(), before.uid(), before.mtime(), before.nlink())
    );
    assert_eq!(std::fs::read(&marker).unwrap(), b"host");
});
