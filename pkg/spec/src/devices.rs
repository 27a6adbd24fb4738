//! The host's device nodes, for privileged containers and for the devices
//! a container config asks for.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::LinuxDeviceType;

/// Directories under /dev that are per container, not host devices.
const SKIP: &[&str] = &["pts", "shm", "mqueue", "fd", "hugepages"];

/// Linux's major and minor numbers of a `dev_t`.
pub fn major_minor(dev: u64) -> (i64, i64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as i64, minor as i64)
}

/// Every character and block device under `dev` (recursively, without
/// following symlinks): (path, character or block, major, minor), sorted
/// by path.
pub fn host_devices(dev: &Path) -> Vec<(String, LinuxDeviceType, i64, i64)> {
    let mut found = Vec::new();
    let mut stack = vec![dev.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                let name = entry.file_name();
                if !(dir == dev && SKIP.iter().any(|s| name == *s)) {
                    stack.push(path);
                }
                continue;
            }
            let letter = if kind.is_char_device() {
                LinuxDeviceType::C
            } else if kind.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            let (major, minor) = major_minor(meta.rdev());
            found.push((path.display().to_string(), letter, major, minor));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_the_null_device() {
        assert_eq!(major_minor(0x0103), (1, 3));
        // major 259, minor 65536 in the large encoding.
        let (major, minor) = (259u64, 65536u64 + 7);
        let dev = ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(major_minor(dev), (259, 65543));
        let all = host_devices(Path::new("/dev"));
        assert!(
            all.iter()
                .any(|d| d == &("/dev/null".into(), LinuxDeviceType::C, 1, 3)),
            "{all:?}"
        );
        assert!(all.iter().all(|(p, ..)| !p.starts_with("/dev/pts/")));
    }
}
