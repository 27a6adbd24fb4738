//! Directory modes that keep local users out of the stores. Image layers
//! hold setuid-root binaries and containers' files hold secrets: below the
//! root (0711) the entry points of the stores are 0700, as containers/storage
//! makes them, so only root (the daemon, the shims, runc) can walk in.
//! Modes are set explicitly, whatever the umask, and also on directories
//! that already exist (a store created by an older version).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Entry points of the stores: root alone may enter.
pub const PRIVATE: u32 = 0o700;
/// The root and the runroot: traversable (the socket below may be shared
/// with a group), not listable.
pub const TRAVERSABLE: u32 = 0o711;
/// Directories a container's non-root user must be able to use, such as
/// the writable layer, which becomes the container's `/`.
pub const SHARED: u32 = 0o755;

/// Creates `dir` (and missing parents) and gives it exactly `mode`. The mode
/// is applied to the opened directory, never to a path checked earlier.
pub fn ensure(dir: &Path, mode: u32) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    if opened.metadata()?.permissions().mode() & 0o7777 != mode {
        opened.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_with_the_mode_and_fixes_an_existing_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("a/b/store");
        ensure(&fresh, PRIVATE).unwrap();
        assert_eq!(mode_of(&fresh), PRIVATE);
        let old = tmp.path().join("old");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o4777)).unwrap();
        ensure(&old, PRIVATE).unwrap();
        assert_eq!(mode_of(&old), PRIVATE);
        ensure(&old, SHARED).unwrap();
        assert_eq!(mode_of(&old), SHARED);
        // A file in the way is an error, not a directory.
        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(ensure(&file, PRIVATE).is_err());
    }

    #[test]
    fn stores_open_private_also_when_created_open() {
        let tmp = tempfile::tempdir().unwrap();
        let (layers, images) = (tmp.path().join("layers"), tmp.path().join("images"));
        for d in [&layers, &images, &layers.join("l")] {
            fs::create_dir_all(d).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let store = crate::LayerStore::open(&layers).unwrap();
        crate::ImageStore::open(&images).unwrap();
        for d in [&layers, &layers.join("l"), &layers.join("tmp"), &images] {
            assert_eq!(mode_of(d), PRIVATE, "{}", d.display());
        }
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o4755);
        tar.append_data(&mut h, "setuid", &[][..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let info = store
            .put(None, None, &tar[..], &crate::unpack::Limits::default())
            .unwrap();
        let layer_dir = store.diff_dir(&info.chain_id);
        assert_eq!(mode_of(layer_dir.parent().unwrap()), PRIVATE);
    }
}
