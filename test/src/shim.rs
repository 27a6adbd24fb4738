//! A pod shim driven directly over ttrpc, without the daemon: the test
//! serves the events endpoint itself, starts `containerd-shim-crio-v2` with
//! the shim v2 `start` action, and builds OCI bundles (busybox rootfs,
//! `runc spec` config) for it. Everything goes on drop, also on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use crio_api::task::protobuf::Message;
use crio_api::task::{self, Events, TaskClient, ttrpc};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemon::{processes_mentioning, tear_down};

/// An event the shim published: its topic and the decoded container id and
/// exit status where the event has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's topic (`/tasks/exit`, …).
    pub topic: String,
    /// The container it is about.
    pub container_id: String,
    /// For `/tasks/exit`: the exit status.
    pub exit_status: Option<u32>,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait::async_trait]
impl Events for Recorder {
    async fn forward(
        &self,
        _ctx: &ttrpc::asynchronous::TtrpcContext,
        req: task::ForwardRequest,
    ) -> ttrpc::Result<task::Empty> {
        use crio_api::task::events::task::{TaskExit, TaskOOM, TaskStart};
        if let Some(env) = req.envelope.as_ref() {
            let value = &env.event.value;
            let (container_id, exit_status) = match env.topic.as_str() {
                "/tasks/exit" => TaskExit::parse_from_bytes(value)
                    .map(|e| (e.container_id, Some(e.exit_status)))
                    .unwrap_or_default(),
                "/tasks/oom" => TaskOOM::parse_from_bytes(value)
                    .map(|e| (e.container_id, None))
                    .unwrap_or_default(),
                "/tasks/start" => TaskStart::parse_from_bytes(value)
                    .map(|e| (e.container_id, None))
                    .unwrap_or_default(),
                _ => (String::new(), None),
            };
            self.0.lock().unwrap().push(Event {
                topic: env.topic.clone(),
                container_id,
                exit_status,
            });
        }
        Ok(task::Empty::default())
    }
}

/// One shim with its own directory, runtime root and events endpoint.
pub struct ShimWorld {
    dir: tempfile::TempDir,
    events: Arc<Recorder>,
    server: Option<ttrpc::asynchronous::Server>,
    /// The shim's ttrpc address.
    pub address: String,
    /// A task client connected to it.
    pub client: TaskClient,
}

/// The cgroup parent of this test process's shim containers.
fn cgroup_parent() -> String {
    format!("{}/shim", crate::pods::test_cgroup_parent())
}

impl ShimWorld {
    /// Serves the events endpoint and starts the shim of pod `pod_id`.
    pub async fn start(pod_id: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("crio-shim-").tempdir()?;
        let events_sock = dir.path().join("events.sock");
        let events = Arc::new(Recorder::default());
        let mut server = ttrpc::asynchronous::Server::new()
            .bind(&format!("unix://{}", events_sock.display()))?
            .register_service(task::create_events(events.clone()));
        server.start().await?;
        let work = dir.path().join("shim");
        std::fs::create_dir_all(&work)?;
        let out = tokio::process::Command::new(crate::bins::bin("containerd-shim-crio-v2"))
            .args(["-namespace", "test", "-id", pod_id, "-address"])
            .arg(&events_sock)
            .arg("start")
            .current_dir(&work)
            .env(crio_contract::env::SHIM_SOCKET_DIR, dir.path().join("s"))
            .env(crio_contract::env::RUNTIME_ROOT, dir.path().join("runc"))
            .env("TTRPC_ADDRESS", &events_sock)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "shim start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let address = crio_api::shim::start_address(&String::from_utf8_lossy(&out.stdout));
        let client = match ttrpc::asynchronous::Client::connect(&address).await {
            Ok(c) => TaskClient::new(c),
            Err(e) => {
                for pid in processes_mentioning(&dir.path().display().to_string()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                bail!("connect to the shim at {address}: {e}");
            }
        };
        Ok(Self {
            dir,
            events,
            server: Some(server),
            address,
            client,
        })
    }

    /// The world's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The directory of the shim's sockets (attach sockets among them).
    pub fn socket_dir(&self) -> PathBuf {
        self.path("s")
    }

    /// The events published so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.0.lock().unwrap().clone()
    }

    /// Stops serving the events endpoint (the daemon is "down").
    pub async fn stop_events(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.shutdown().await;
        }
        let _ = std::fs::remove_file(self.path("events.sock"));
    }

    /// A bundle for container `id` running `args` in a busybox rootfs, with
    /// `annotations` and its cgroup under this test's parent; `edit` may
    /// change the spec further.
    pub fn bundle(
        &self,
        id: &str,
        args: &[&str],
        annotations: &[(&str, &str)],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Result<PathBuf> {
        let bundle = self.path(&format!("bundles/{id}"));
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs)?;
        let layer = crate::images::busybox_layer()?.into_tar();
        tar::Archive::new(&layer[..]).unpack(&rootfs)?;
        let out = Command::new("runc")
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .context("runc spec")?;
        if !out.status.success() {
            bail!("runc spec: {}", String::from_utf8_lossy(&out.stderr));
        }
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.iter().map(|a| serde_json::json!(a)).collect();
        spec["root"]["readonly"] = false.into();
        spec["linux"]["cgroupsPath"] = format!("{}/{id}", cgroup_parent()).into();
        let map: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        spec["annotations"] = map.into();
        edit(&mut spec);
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(bundle)
    }

    /// Creates container `id` from `bundle`.
    pub async fn create(&self, id: &str, bundle: &Path, terminal: bool) -> Result<u32> {
        let req = task::CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            terminal,
            ..Default::default()
        };
        let resp = self.client.create(ctx(), &req).await?;
        Ok(resp.pid)
    }

    /// Starts container (or exec) `id`.
    pub async fn start_task(&self, id: &str, exec_id: &str) -> Result<u32> {
        let req = task::StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        Ok(self.client.start(ctx(), &req).await?.pid)
    }

    /// Waits for container (or exec) `id` and returns its exit status.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<u32> {
        let req = task::WaitRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.wait(ctx(), &req))
            .await
            .context("wait timed out")??;
        Ok(resp.exit_status)
    }

    /// Deletes container `id`.
    pub async fn delete(&self, id: &str) -> Result<u32> {
        let req = task::DeleteRequest {
            id: id.into(),
            ..Default::default()
        };
        Ok(self.client.delete(ctx(), &req).await?.exit_status)
    }

    /// The status of container `id`.
    pub async fn status(&self, id: &str) -> Result<task::Status> {
        let req = task::StateRequest {
            id: id.into(),
            ..Default::default()
        };
        let resp = self.client.state(ctx(), &req).await?;
        Ok(resp.status.enum_value_or_default())
    }

    /// The memory cgroup directory of container `id` (cgroup v1).
    pub fn memory_cgroup(&self, id: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup/memory")
            .join(cgroup_parent().trim_start_matches('/'))
            .join(id)
    }
}

/// A ttrpc context with a generous timeout.
pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(Duration::from_secs(20).as_nanos() as i64)
}

impl Drop for ShimWorld {
    fn drop(&mut self) {
        tear_down(
            self.dir.path(),
            &[cgroup_parent(), crate::pods::test_cgroup_parent()],
        );
    }
}
