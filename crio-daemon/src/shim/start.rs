//! Starting a pod's shim, per the kind of its runtime handler: crio-rs's
//! shim (or an `oci` handler's `monitor_path`) is started as its server
//! directly, the daemon its parent; a `vm` handler's containerd shim v2 is
//! started the shim v2 way, through its `start` action, which prints the
//! address it serves on.

use std::path::Path;
use std::process::Stdio;

use crio_config::RuntimeType;
use crio_contract::{env, pod};
use tokio::io::AsyncReadExt;

use super::{NAMESPACE, Place, ShimError, Shims, scope, step};
use crate::handlers::Handler;

/// One start of a pod's shim: what `run_server` and `start_action` share.
struct Launch<'a> {
    handler: &'a Handler,
    binary: &'a Path,
    /// The pod's ID.
    id: &'a str,
    pod_dir: &'a Path,
    /// Where the shim goes.
    place: Place,
}

impl Launch<'_> {
    /// Tells the shim the cgroup to join, under the cgroupfs driver (under
    /// systemd's, the daemon moves it into its scope).
    fn cgroup_env(&self, cmd: &mut tokio::process::Command) {
        if let Place::Cgroup(leaf) = &self.place {
            cmd.env(env::SHIM_CGROUP, leaf);
        }
    }
}

impl Shims {
    /// The shim binary of `handler` as a command run in `dir`, with the
    /// environment every shim gets: the events endpoint, the sockets'
    /// directory, the log format, the OCI runtime and root (`oci`), the
    /// cgroup driver and the handler's `monitor_env`.
    pub(super) fn command(
        &self,
        handler: &Handler,
        binary: &Path,
        dir: &Path,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(binary);
        cmd.current_dir(dir)
            .env("TTRPC_ADDRESS", &self.events)
            .env(env::SHIM_SOCKET_DIR, &self.socket_dir)
            .env(env::LOG_FORMAT, self.log_format)
            // One malloc arena: the shim's few threads need no more, and
            // each extra arena is memory the pod pays for.
            .env("MALLOC_ARENA_MAX", "1")
            .env(
                env::SYSTEMD_CGROUP,
                if self.systemd_cgroup { "1" } else { "0" },
            )
            .envs(handler.monitor_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if handler.kind == RuntimeType::Oci {
            cmd.env(env::RUNTIME, &handler.runtime);
        }
        if !handler.runtime_root.as_os_str().is_empty() {
            cmd.env(env::RUNTIME_ROOT, &handler.runtime_root);
        }
        cmd
    }

    /// Starts pod `id`'s shim, of runtime handler `handler`, and returns
    /// its address; nothing of it is left when it fails.
    pub(super) async fn spawn(
        &self,
        handler: &Handler,
        id: &str,
        pod_dir: &Path,
        cgroup: &str,
    ) -> Result<String, ShimError> {
        let binary = handler.shim.as_deref().ok_or(ShimError::NoBinary)?;
        let short: String = id.chars().take(32).collect();
        let socket = |suffix: &str| format!("unix://{}/{short}{suffix}", self.socket_dir.display());
        let address_file = pod_dir.join(pod::SHIM_ADDRESS_FILE);
        let launch = Launch {
            handler,
            binary,
            id,
            pod_dir,
            place: Place::of(self.systemd_cgroup, cgroup, id),
        };
        let started = match handler.kind {
            RuntimeType::Oci => {
                // Recorded before the shim exists, so a daemon that dies
                // while it starts finds it again (or finds nothing there)
                // after a restart.
                let address = socket(".sock");
                std::fs::write(&address_file, &address).map_err(step("write shim address"))?;
                self.run_server(&launch, [&address, &socket(".v3.sock")])
                    .await
                    .map(|()| address)
            }
            // Such a shim writes its `address` file before it answers.
            RuntimeType::Vm => match self.start_action(&launch).await {
                Ok(address) => std::fs::write(&address_file, &address)
                    .map(|()| address)
                    .map_err(step("write shim address")),
                Err(e) => Err(e),
            },
        };
        if let (Ok(_), RuntimeType::Vm, Place::Scope { slice, unit }) =
            (&started, handler.kind, &launch.place)
            && let Err(e) = self.place_served(id, pod_dir, slice, unit).await
        {
            // It serves the pod all the same, from the daemon's cgroup.
            tracing::warn!(pod = id, "the shim stays in the daemon's cgroup: {e}");
        }
        if let Err(e) = &started {
            for file in super::ADDRESS_FILES {
                let _ = std::fs::remove_file(pod_dir.join(file));
            }
            // A shim killed at its start deadline may have bound them.
            for suffix in [".sock", ".v3.sock"] {
                let _ = std::fs::remove_file(socket(suffix).trim_start_matches("unix://"));
            }
            tracing::warn!(pod = id, handler = %handler.name, "{e}");
        }
        started
    }

    /// Moves the server a `vm` handler's `start` action left (no child of
    /// the daemon: its pid from the task API's Connect) into its scope.
    async fn place_served(
        &self,
        id: &str,
        pod_dir: &Path,
        slice: &str,
        unit: &str,
    ) -> Result<(), ShimError> {
        let client = self.client(id, pod_dir).await?;
        let req = crio_api::task::ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let timeout = i64::try_from(self.start_timeout.as_nanos()).unwrap_or(i64::MAX);
        let pid = client
            .0
            .connect(crio_api::task::ttrpc::context::with_timeout(timeout), &req)
            .await
            .map_err(|e| ShimError::Step {
                what: format!("ask shim of pod {id} for its pid"),
                message: e.to_string(),
            })?
            .shim_pid;
        self.to_scope(slice, unit, pid).await
    }

    /// Moves shim process `pid` into scope `unit` of `slice`.
    async fn to_scope(&self, slice: &str, unit: &str, pid: u32) -> Result<(), ShimError> {
        scope::place(slice, unit, pid, self.start_timeout)
            .await
            .map_err(|message| ShimError::Step {
                what: format!("put the shim in systemd scope {unit}"),
                message,
            })
    }

    /// The shim's messages (it has no other log), in the pod's directory.
    fn open_log(pod_dir: &Path) -> Result<(std::fs::File, std::path::PathBuf), ShimError> {
        let log_path = pod_dir.join("shim.log");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map(|log| (log, log_path.clone()))
            .map_err(step(format!("open {}", log_path.display())))
    }

    /// Runs the server of pod `id` directly (what the binary's `start`
    /// action would do, without that extra process) on `[task API socket,
    /// framework socket]` (`<socket_dir>/<id[:32]>.sock` and `.v3.sock`, as
    /// `start` names them) and waits until it serves: it closes its stdout
    /// then. The daemon stays its parent (and reaps it) until it exits.
    async fn run_server(
        &self,
        launch: &Launch<'_>,
        [served, framework_socket]: [&str; 2],
    ) -> Result<(), ShimError> {
        let Launch { id, binary, .. } = *launch;
        let (log, log_path) = Self::open_log(launch.pod_dir)?;
        let events = self.events.display().to_string();
        let mut cmd = self.command(launch.handler, binary, launch.pod_dir);
        cmd.args(["-namespace", NAMESPACE, "-id", id, "-address", &events])
            .args(["-socket", framework_socket])
            .stdout(Stdio::piped())
            .stderr(log);
        launch.cgroup_env(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(step(format!("start shim {}", binary.display())))?;
        if let (Place::Scope { slice, unit }, Some(pid)) = (&launch.place, child.id())
            && let Err(e) = self.to_scope(slice, unit, pid).await
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(e);
        }
        let stdout = child.stdout.take();
        let ready = async {
            if let Some(mut out) = stdout {
                let _ = out.read_to_end(&mut Vec::new()).await;
            }
        };
        if tokio::time::timeout(self.start_timeout, ready)
            .await
            .is_err()
        {
            let _ = child.start_kill();
            // SIGKILLed: the wait is short.
            let _ = child.wait().await;
            return Err(ShimError::StartTimeout {
                pod: id.to_string(),
                timeout: self.start_timeout,
            });
        }
        if Path::new(served.trim_start_matches("unix://")).exists() {
            let (exited, exit) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = child.wait().await;
                let _ = exited.send(true);
            });
            self.exits.lock().insert(id.to_string(), exit);
            return Ok(());
        }
        // It exited without serving: its status and log say why.
        let status = child.wait().await.map_err(step("wait for the shim"))?;
        Err(ShimError::StartFailed {
            status: status.to_string(),
            log: std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
    }

    /// Runs the shim v2 `start` action of a `vm` handler's binary: it
    /// starts the pod's shim server (which outlives it, no child of the
    /// daemon) and prints the address it serves on, plain or as
    /// containerd 2's JSON.
    async fn start_action(&self, launch: &Launch<'_>) -> Result<String, ShimError> {
        let Launch { id, binary, .. } = *launch;
        let (log, log_path) = Self::open_log(launch.pod_dir)?;
        let events = self.events.display().to_string();
        let mut cmd = self.command(launch.handler, binary, launch.pod_dir);
        cmd.args([
            "-namespace",
            NAMESPACE,
            "-id",
            id,
            "-address",
            &events,
            "start",
        ])
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
        launch.cgroup_env(&mut cmd);
        let output = match tokio::time::timeout(self.start_timeout, cmd.output()).await {
            Ok(output) => output.map_err(step(format!("start shim {}", binary.display())))?,
            Err(_) => {
                return Err(ShimError::StartTimeout {
                    pod: id.to_string(),
                    timeout: self.start_timeout,
                });
            }
        };
        let address = start_reply(&String::from_utf8_lossy(&output.stdout));
        match address {
            Some(address) if output.status.success() => Ok(address),
            _ => Err(ShimError::StartFailed {
                status: output.status.to_string(),
                log: std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            }),
        }
    }
}

/// The address in a shim's `start` reply: the plain address, or the
/// `address` of containerd 2's JSON form.
fn start_reply(reply: &str) -> Option<String> {
    let reply = reply.trim();
    let address = match serde_json::from_str::<serde_json::Value>(reply) {
        Ok(json) => json["address"].as_str()?.to_string(),
        Err(_) => reply.to_string(),
    };
    (!address.is_empty()).then_some(address)
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_replies_plain_and_json() {
        assert_eq!(
            super::start_reply("unix:///run/s.sock\n").as_deref(),
            Some("unix:///run/s.sock")
        );
        assert_eq!(
            super::start_reply(r#"{"version":3,"address":"unix:///x","protocol":"ttrpc"}"#)
                .as_deref(),
            Some("unix:///x")
        );
        assert_eq!(super::start_reply(""), None);
        assert_eq!(super::start_reply(r#"{"version":3}"#), None);
    }
}
