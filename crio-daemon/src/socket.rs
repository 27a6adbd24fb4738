//! The CRI listen socket: created with its parent directory and mode 0660;
//! refused when another daemon answers on it; replaced when stale.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A live process accepts connections on the path.
    #[error("another daemon is already serving {0}: stop it first, or choose another --listen")]
    InUse(String),
    /// The path exists and is not a socket: never deleted.
    #[error("{0} exists and is not a socket")]
    NotASocket(String),
    /// Filesystem or bind failure.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Binds `path` for the CRI server.
pub async fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let shown = path.display().to_string();
    let io = |e| SocketError::Io(shown.clone(), e);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(SocketError::NotASocket(shown)),
        Ok(_) => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(SocketError::InUse(shown));
            }
            tracing::info!(socket = %shown, "removing stale socket");
            std::fs::remove_file(path).map_err(io)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_live_replaces_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/crio.sock");
        let live = bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let err = bind(&path).await.unwrap_err();
        assert!(matches!(err, SocketError::InUse(_)), "{err}");
        assert!(err.to_string().contains("already serving"));
        drop(live);
        // The file stays behind after the listener is gone: stale, replaced.
        assert!(path.exists());
        let _again = bind(&path).await.unwrap();

        let plain = tmp.path().join("file");
        std::fs::write(&plain, "data").unwrap();
        assert!(matches!(
            bind(&plain).await,
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "data");
    }
}
