//! The console socket: a runtime asked for a terminal makes one and sends
//! its master over a Unix socket the shim listens on.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use crate::error::{Result, ShimError};
use crate::runtime::Stdio;

/// How long the runtime has to send the terminal once it succeeded.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `launch` with a console socket at `socket` and returns the terminal
/// master the runtime sent on it.
pub async fn with_console<F, Fut>(socket: &Path, launch: F) -> Result<OwnedFd>
where
    F: FnOnce(Stdio) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let _ = tokio::fs::remove_file(socket).await;
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| ShimError::io(format!("console socket {}", socket.display()), e))?;
    let accept = tokio::spawn(async move { crate::io::receive_console(&listener).await });
    let launched = launch(Stdio::Console(socket.display().to_string())).await;
    let _ = tokio::fs::remove_file(socket).await;
    if let Err(e) = launched {
        accept.abort();
        return Err(e);
    }
    match tokio::time::timeout(RECEIVE_TIMEOUT, accept).await {
        Ok(Ok(Ok(fd))) => Ok(fd),
        Ok(Ok(Err(e))) => Err(ShimError::io("receive terminal", e)),
        _ => Err(ShimError::NoTerminal),
    }
}

/// The first 32 characters of an id, for short socket names.
pub fn short(id: &str) -> String {
    id.chars().take(32).collect()
}
