//! Finding the pod shim binary: the handler's `monitor_path`, else next to
//! the daemon's own executable, else in the package layout relative to it
//! (`/usr/bin/crio` finds `/usr/libexec/crio/containerd-shim-crio-v2`), else
//! on PATH.

use std::path::{Path, PathBuf};

/// The shim binary's file name.
pub const SHIM_NAME: &str = "containerd-shim-crio-v2";

/// Where the package puts the shim, relative to the daemon's directory.
pub const LIBEXEC_DIR: &str = "../libexec/crio";

/// Where the shim is, or `None` when it is nowhere to be found.
pub fn locate(monitor_path: &Path, own_exe: Option<&Path>, path_env: &str) -> Option<PathBuf> {
    if !monitor_path.as_os_str().is_empty() {
        return monitor_path.is_file().then(|| monitor_path.to_path_buf());
    }
    let dir = own_exe.and_then(Path::parent);
    let beside = dir.map(|dir| dir.join(SHIM_NAME));
    let libexec = dir.map(|dir| {
        let dir = dir.join(LIBEXEC_DIR);
        // `/usr/bin/../libexec/crio`, spelled `/usr/libexec/crio` in the
        // daemon's logs and Status.
        dir.canonicalize().unwrap_or(dir).join(SHIM_NAME)
    });
    [beside, libexec]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| crio_config::find_on_path(SHIM_NAME, path_env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(path: &Path) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn search_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (beside, on_path) = (tmp.path().join("bin"), tmp.path().join("path"));
        std::fs::create_dir_all(&beside).unwrap();
        std::fs::create_dir_all(&on_path).unwrap();
        let exe = beside.join("crio");
        let path_env = on_path.display().to_string();

        assert_eq!(locate(Path::new(""), Some(&exe), &path_env), None);
        executable(&on_path.join(SHIM_NAME));
        assert_eq!(
            locate(Path::new(""), Some(&exe), &path_env),
            Some(on_path.join(SHIM_NAME))
        );
        let libexec = tmp.path().join("libexec/crio");
        std::fs::create_dir_all(&libexec).unwrap();
        executable(&libexec.join(SHIM_NAME));
        assert_eq!(
            locate(Path::new(""), Some(&exe), &path_env),
            Some(libexec.canonicalize().unwrap().join(SHIM_NAME))
        );
        executable(&beside.join(SHIM_NAME));
        assert_eq!(
            locate(Path::new(""), Some(&exe), &path_env),
            Some(beside.join(SHIM_NAME))
        );
        let explicit = tmp.path().join("my-shim");
        assert_eq!(locate(&explicit, Some(&exe), &path_env), None);
        executable(&explicit);
        assert_eq!(locate(&explicit, Some(&exe), &path_env), Some(explicit));
    }
}
