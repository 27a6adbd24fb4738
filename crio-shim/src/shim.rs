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

use containerd_shim::protos::shim_async::create_task;
use containerd_shim::protos::ttrpc::r#async::Server;
use tokio::sync::Mutex;

use crate::error::ShimError;
use crate::service::TaskService;

/// Serves `service` on `address` under every task API name.
async fn serve_both_versions(address: &str, service: &TaskService) -> Result<Server, ShimError> {
    if let Some(path) = address.strip_prefix("unix://") {
        let _ = std::fs::remove_file(path);
    }
    let mut server = Server::new()
        .bind(address)
        .map_err(|source| ShimError::Serve {
            what: format!("bind {address}"),
            source,
        })?;
    for name in TASK_SERVICES {
        let mut services = create_task(Arc::new(service.clone()));
        if let Some(task) = services.remove(TASK_SERVICES[0]) {
            services.insert(name.to_string(), task);
        }
        server = server.register_service(services);
    }
    server.start().await.map_err(|source| ShimError::Serve {
        what: format!("serve {address}"),
        source,
    })?;
    Ok(server)
}

/// The socket directory when the daemon names none (as when containerd's
/// `ctr` starts the shim): crio-rs's default runroot, never containerd's.
const DEFAULT_SOCKET_DIR: &str = "/run/crio/shims";

/// Where this shim's sockets go.
pub fn socket_dir() -> PathBuf {
    std::env::var_os(crio_contract::env::SHIM_SOCKET_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET_DIR.into())
}

/// The framework's own server listens on `<name>` + this; clients use the
/// shim's server on `<name>.sock`, which answers the task API under both
/// its v3 name (containerd 2, crio-rs) and its v2 name (containerd 1.6/1.7).
const FRAMEWORK_SUFFIX: &str = ".v3.sock";

/// The task API's service names, newest first.
const TASK_SERVICES: [&str; 2] = ["containerd.task.v3.Task", "containerd.task.v2.Task"];

/// One pod's shim.
pub struct Shim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    bundle: String,
    socket: String,
    server: Mutex<Option<Server>>,
}

#[async_trait]
impl containerd_shim::asynchronous::Shim for Shim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        if args.action.is_empty() {
            // The server leaves the daemon's session: a stop of the daemon
            // (or of its unit's process group) does not reach it.
            let _ = nix::unistd::setsid();
            // The cgroup the daemon chose (the pod's), never the daemon's.
            if let Some(cgroup) = std::env::var_os(crio_contract::env::SHIM_CGROUP) {
                let root = std::path::Path::new("/sys/fs/cgroup");
                if let Err(e) = crio_cgroups::join(root, cgroup.as_ref(), std::process::id()) {
                    crate::messages::warn(format_args!(
                        "join cgroup {}: {e}",
                        cgroup.to_string_lossy()
                    ));
                }
            }
        }
        Self {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            socket: args.socket.clone(),
            server: Mutex::new(None),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let dir = socket_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Other(format!("create {}: {e}", dir.display())))?;
        let short: String = opts.id.chars().take(32).collect();
        let address = format!("unix://{}/{short}.sock", dir.display());
        let framework_socket = format!("unix://{}/{short}{FRAMEWORK_SUFFIX}", dir.display());
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
                &framework_socket,
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
        std::fs::write(crio_contract::pod::START_ADDRESS_FILE, &address)
            .map_err(|e| Error::Other(format!("write address: {e}")))?;
        // The plain address is the reply every containerd understands (1.6
        // cannot read the JSON form the framework would print): print it
        // and end the `start` action here.
        use std::io::Write;
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(address.as_bytes());
        let _ = stdout.flush();
        std::process::exit(0)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        // The shim is gone: force its container down and report a kill.
        let runc = crate::runc::Runc::from_env();
        let _ = crate::runtime::Runtime::delete(&runc, &self.id).await;
        // The working directory is the bundle when no -bundle is given.
        let bundle = if self.bundle.is_empty() {
            "."
        } else {
            &self.bundle
        };
        crate::mount::unmount_rootfs(std::path::Path::new(bundle));
        let mut resp = DeleteResponse::new();
        resp.exit_status = 137;
        Ok(resp)
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        if let Some(mut server) = self.server.lock().await.take() {
            let _ = server.shutdown().await;
        }
        if let Some(path) = self.socket.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn create_task_service(&self, _framework: RemotePublisher) -> Self::T {
        // The framework's publisher packs events through protobuf
        // reflection, which costs the shim memory: ours packs by name.
        let service = TaskService::new(self.namespace.clone(), self.exit.clone());
        if let Some(base) = self.socket.strip_suffix(FRAMEWORK_SUFFIX) {
            match serve_both_versions(&format!("{base}.sock"), &service).await {
                Ok(server) => *self.server.lock().await = Some(server),
                Err(e) => crate::messages::warn(format_args!("serve the task API: {e}")),
            }
        }
        service
    }
}
