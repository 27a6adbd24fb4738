//! Pod namespaces from the daemon's side: created and pinned on a thread of
//! their own (see [`crio_network::netns::pin`]), never on an async worker.

use crio_network::netns::{self, PinRequest};

/// Creates and pins `req`'s namespaces; the error names the failed step.
pub async fn pin(req: PinRequest) -> Result<(), String> {
    tokio::task::spawn_blocking(move || netns::pin(&req))
        .await
        .map_err(|e| format!("pin namespaces: {e}"))?
        .map_err(|e| format!("pin namespaces: {e}"))
}
