//! ExecSync and the exec processes of the streaming server: a process
//! created in a running container through its pod's shim.

use std::path::Path;
use std::time::Duration;

use crio_contract::EXEC_SYNC_OUTPUT_MAX;

use super::{ContainerRecord, Containers};
use crate::error::{Error, Result};
use crate::ids::Id;
use crate::shim::{CALL_TIMEOUT, ExecProcess, Task};

/// SIGKILL.
const SIGKILL: u32 = 9;

/// An exec process created in a container's shim.
pub struct Exec {
    client: Task,
    container: ContainerRecord,
    /// The exec ID.
    pub id: String,
}

/// What an exec process runs and where its stdio goes.
pub struct ExecOptions {
    /// The command.
    pub cmd: Vec<String>,
    /// With a terminal.
    pub tty: bool,
    /// stdin as the shim takes it ("attach": from its attach socket).
    pub stdin: String,
    /// Files stdout and stderr go to (empty: only to attach clients).
    pub files: (String, String),
}

/// What ExecSync answers: stdout, stderr, exit code.
pub type ExecOutput = (Vec<u8>, Vec<u8>, i32);

impl Exec {
    /// The container the process runs in (the full ID a request's prefix named).
    pub fn container_id(&self) -> &Id {
        &self.container.id
    }

    /// Starts the process.
    pub async fn start(&self) -> Result<()> {
        self.client
            .start(&self.container.id, &self.id)
            .await
            .map(drop)
            .map_err(Error::task("start exec"))
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&self) {
        let id = &self.container.id;
        let _ = self.client.kill(id, &self.id, SIGKILL, false).await;
        let _ = self.client.wait(id, &self.id, Some(CALL_TIMEOUT)).await;
    }

    /// Forgets the process in the shim.
    pub async fn delete(&self) {
        let _ = self.client.delete(&self.container.id, &self.id).await;
    }

    /// Starts the process and waits at most `timeout` seconds (0: no limit)
    /// for its exit status; killed when the time is up.
    async fn run(&self, cmd: &[String], timeout: i64) -> Result<u32> {
        self.start().await?;
        let id = &self.container.id;
        let waited = self.client.wait(id, &self.id, None);
        let exit = if timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(timeout as u64), waited).await {
                Ok(done) => done,
                Err(_) => {
                    self.kill().await;
                    return Err(Error::Deadline(format!(
                        "command {cmd:?} timed out after {timeout}s"
                    )));
                }
            }
        } else {
            waited.await
        };
        exit.map_err(Error::task("wait exec"))
    }
}

/// A fresh exec ID.
fn exec_id() -> String {
    crate::pod::new_id().chars().take(16).collect()
}

impl Containers {
    /// ExecSync: runs `cmd` in the running container through its shim,
    /// captures stdout and stderr (each capped at
    /// [`EXEC_SYNC_OUTPUT_MAX`],
    /// like the kubelet's and CRI-O's limit) and waits at most `timeout`
    /// seconds (0: no limit). Output past the cap is dropped by the shim;
    /// as in CRI-O, the response cannot say so, the daemon's log does.
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: i64) -> Result<ExecOutput> {
        self.shims.check()?;
        // The files go in the bundle of the container the ID (or prefix) names.
        let record = self.existing(id)?;
        let id = &record.id;
        let bundle = self.bundle(id);
        let exec_id = exec_id();
        let (out, err) = (
            bundle.join(format!("exec-{exec_id}.out")),
            bundle.join(format!("exec-{exec_id}.err")),
        );
        let options = ExecOptions {
            cmd: cmd.clone(),
            tty: false,
            stdin: String::new(),
            files: (out.display().to_string(), err.display().to_string()),
        };
        let exec = self.exec_create_as(id, &exec_id, options).await?;
        let result = async {
            let status = exec.run(&cmd, timeout).await?;
            let (out, err) = (out.clone(), err.clone());
            let (stdout, stderr) = tokio::task::spawn_blocking(move || {
                (read_exec_output(&out), read_exec_output(&err))
            })
            .await
            .map_err(Error::internal)?;
            for (stream, data) in [("stdout", &stdout), ("stderr", &stderr)] {
                if data.len() as u64 >= EXEC_SYNC_OUTPUT_MAX {
                    tracing::warn!(
                        "ExecSync output of container {id} ({cmd:?}): {stream} reached the \
                         {EXEC_SYNC_OUTPUT_MAX}-byte cap; anything after it was discarded"
                    );
                }
            }
            Ok((stdout, stderr, status as i32))
        }
        .await;
        exec.delete().await;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_file(&err);
        })
        .await;
        result
    }

    /// Creates (not starts) an exec process in running container `id`,
    /// in the container's process settings.
    pub async fn exec_create(&self, id: &str, options: ExecOptions) -> Result<Exec> {
        self.shims.check()?;
        self.exec_create_as(id, &exec_id(), options).await
    }

    async fn exec_create_as(&self, id: &str, exec_id: &str, options: ExecOptions) -> Result<Exec> {
        if options.cmd.is_empty() {
            return Err(Error::field("cmd", "must not be empty"));
        }
        let r = self.running(id).await?;
        let bundle = self.bundle(&r.id);
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(bundle.join("config.json")).map_err(Error::internal)?,
        )
        .map_err(Error::internal)?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(options.cmd);
        process["terminal"] = serde_json::json!(options.tty);
        let client = self.client(&r).await?;
        let (stdout, stderr) = options.files;
        client
            .exec(ExecProcess {
                id: r.id.to_string(),
                exec_id: exec_id.to_string(),
                terminal: options.tty,
                stdin: options.stdin,
                stdout,
                stderr,
                process: serde_json::to_vec(&process).map_err(Error::internal)?,
            })
            .await
            .map_err(Error::task("exec"))?;
        Ok(Exec {
            client,
            container: r,
            id: exec_id.to_string(),
        })
    }
}

/// An ExecSync output file as the shim left it: at most
/// [`EXEC_SYNC_OUTPUT_MAX`] bytes are read, whatever the file holds.
fn read_exec_output(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(EXEC_SYNC_OUTPUT_MAX).read_to_end(&mut buf);
    }
    buf
}
