//! The shim v2 life cycle: `start` spawns the server in its own session and
//! prints its address (a socket under the directory the daemon names in
//! `CRIO_SHIM_SOCKET_DIR`, by default /run/crio/shims, never containerd's);
//! `delete` cleans up after a
//! dead shim; the server runs until shut down.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, Flags, StartOpts};
use tokio::io::AsyncReadExt;

use crate::task::TaskService;

/// Where the daemon wants shim sockets.
pub const SOCKET_DIR_ENV: &str = "CRIO_SHIM_SOCKET_DIR";

/// The socket directory when the daemon names none (as when containerd's
/// `ctr` starts the shim): crio-rs's default runroot, never containerd's.
const DEFAULT_SOCKET_DIR: &str = "/run/crio/shims";

/// Where this shim's sockets go.
pub fn socket_dir() -> PathBuf {
    std::env::var_os(SOCKET_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET_DIR.into())
}

/// One pod's shim.
pub struct Shim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
}

#[async_trait]
impl containerd_shim::asynchronous::Shim for Shim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        if args.action.is_empty() {
            // The server leaves the daemon's session: a stop of the daemon
            // (or of its unit's process group) does not reach it.
            let _ = nix::unistd::setsid();
        }
        Self {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let dir = socket_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Other(format!("create {}: {e}", dir.display())))?;
        let short: String = opts.id.chars().take(32).collect();
        let address = format!("unix://{}/{short}.sock", dir.display());
        let exe = std::env::current_exe().map_err(|e| Error::Other(e.to_string()))?;
        let mut child = tokio::process::Command::new(exe)
            .args([
                "-namespace",
                &opts.namespace,
                "-id",
                &opts.id,
                "-address",
                &opts.address,
                "-socket",
                &address,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Other(format!("spawn shim server: {e}")))?;
        // The server closes its stdout once it serves.
        let mut sink = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_end(&mut sink).await;
        }
        std::fs::write("address", &address)
            .map_err(|e| Error::Other(format!("write address: {e}")))?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        // The shim is gone: force its container down and report a kill.
        let runc = crate::runc::Runc::from_env();
        let _ = runc.run(&["delete", "--force", &self.id], None).await;
        let mut resp = DeleteResponse::new();
        resp.exit_status = 137;
        Ok(resp)
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        TaskService::new(self.namespace.clone(), publisher, self.exit.clone())
    }
}
