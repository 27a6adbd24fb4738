//! The CRI listen socket: created with its parent directory and mode 0660;
//! refused when another daemon answers on it; replaced when stale. Its
//! connections speak gRPC (HTTP/2) or the HTTP/1.1 status API, told apart
//! by their first bytes.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, recv};
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// What every HTTP/2 connection, so every gRPC one, starts with.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Enough of the preface to tell: no HTTP/1.1 method is `PRI`.
const DECIDING: usize = 3;
/// How long a new connection may stay silent before it is dropped.
const SNIFF_DEADLINE: Duration = Duration::from_secs(10);

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/2: the CRI's gRPC.
    Grpc,
    /// Anything else: the HTTP/1.1 status API.
    Http1,
}

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

/// Tells what `stream` speaks from its first bytes, peeked (left for the
/// server that gets it); `None` when the peer closed without a byte.
pub async fn sniff(stream: &UnixStream) -> std::io::Result<Option<Protocol>> {
    let mut buf = [0u8; DECIDING];
    loop {
        stream.readable().await?;
        let peeked = stream.try_io(Interest::READABLE, || {
            recv(stream.as_raw_fd(), &mut buf, MsgFlags::MSG_PEEK).map_err(std::io::Error::from)
        });
        let n = match peeked {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != HTTP2_PREFACE[..n] {
            return Ok(Some(Protocol::Http1));
        }
        if n == DECIDING {
            return Ok(Some(Protocol::Grpc));
        }
        // Part of the preface: the socket stays readable until the rest
        // comes, so wait a little rather than spin.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Accepts connections for ever: each is sniffed in its own task (one peek
/// per connection); gRPC ones go to `grpc` (tonic's incoming stream), the
/// others to `http`.
pub async fn accept_loop<F, Fut>(listener: UnixListener, grpc: mpsc::Sender<UnixStream>, http: F)
where
    F: Fn(UnixStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, mostly: wait instead of spinning.
                tracing::warn!("accept on the CRI socket: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (grpc, http) = (grpc.clone(), http.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(SNIFF_DEADLINE, sniff(&stream)).await {
                Ok(Ok(Some(Protocol::Grpc))) => {
                    let _ = grpc.send(stream).await;
                }
                Ok(Ok(Some(Protocol::Http1))) => http(stream).await,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::debug!("CRI socket connection: {e}"),
                Err(_) => {
                    tracing::debug!("CRI socket connection silent for {SNIFF_DEADLINE:?}: dropped")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn sniffs_http2_and_http1_without_consuming() {
        for (sent, want) in [
            (HTTP2_PREFACE, Some(Protocol::Grpc)),
            (&b"GET /info HTTP/1.1\r\n\r\n"[..], Some(Protocol::Http1)),
            (&b"P"[..], Some(Protocol::Http1)),
            (&b""[..], None),
        ] {
            let (mut client, mut server) = UnixStream::pair().unwrap();
            if sent == b"P" {
                // A prefix of both: decided when the next byte comes.
                client.write_all(b"P").await.unwrap();
                let waiting = tokio::spawn(async move {
                    let got = sniff(&server).await.unwrap();
                    (got, server)
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert!(!waiting.is_finished());
                client.write_all(b"OST /x").await.unwrap();
                let (got, _server) = waiting.await.unwrap();
                assert_eq!(got, want);
                continue;
            }
            client.write_all(sent).await.unwrap();
            drop(client);
            assert_eq!(sniff(&server).await.unwrap(), want, "{sent:?}");
            // Peeked, not read: the server still gets every byte.
            let mut rest = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut rest)
                .await
                .unwrap();
            assert_eq!(rest, sent);
        }
    }

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
