//! Pod namespaces from the daemon's side: created and pinned on a thread of
//! their own (see [`crio_network::netns::pin`]), never on an async worker.

use crio_network::netns::{self, PinRequest};

/// Why the namespaces of a pod could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The blocking task did not finish.
    #[error("pin namespaces: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A step failed (it is named).
    #[error("pin namespaces: {0}")]
    Pin(#[from] netns::PinError),
}

/// Creates and pins `req`'s namespaces; the error names the failed step.
pub async fn pin(req: PinRequest) -> Result<(), PinError> {
    tokio::task::spawn_blocking(move || netns::pin(&req)).await??;
    Ok(())
}
