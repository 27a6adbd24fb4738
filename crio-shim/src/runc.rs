//! Running the OCI runtime's CLI. The shim is a subreaper whose SIGCHLD
//! handler reaps every child, so a runtime command's exit status comes from
//! the framework's exit monitor, never from waiting on the child ourselves.

use std::path::PathBuf;
use std::process::Stdio;

use containerd_shim::asynchronous::monitor::{
    Subscription, monitor_subscribe, monitor_unsubscribe,
};
use containerd_shim::monitor::{Subject, Topic};
use tokio::io::AsyncReadExt;

use crate::io::ChildStdio;

/// Waits for `pid`'s exit on a subscription made before it could exit, and
/// ends the subscription; 255 if the monitor went away first.
pub async fn exit_of(sub: Subscription, pid: i32) -> i32 {
    let mut rx = sub.rx;
    let mut code = 255;
    while let Some(event) = rx.recv().await {
        if matches!(event.subject, Subject::Pid(p) if p == pid) {
            code = event.exit_code;
            break;
        }
    }
    let _ = monitor_unsubscribe(sub.id).await;
    code
}

/// The runtime binary and its state root, from the environment the daemon
/// starts the shim with (`CRIO_RUNTIME`, `CRIO_RUNTIME_ROOT`, and
/// `CRIO_SYSTEMD_CGROUP=1` for the systemd cgroup driver).
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
}

/// What a runtime command did.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit code.
    pub code: i32,
    /// Its stdout (empty when its stdio belonged to a container).
    pub stdout: String,
    /// Its stderr (likewise).
    pub stderr: String,
}

impl Runc {
    /// The runtime named by the environment, runc on PATH by default.
    pub fn from_env() -> Self {
        Self {
            binary: std::env::var_os(crio_contract::env::RUNTIME)
                .map(PathBuf::from)
                .unwrap_or_else(|| "runc".into()),
            root: std::env::var_os(crio_contract::env::RUNTIME_ROOT)
                .map(PathBuf::from)
                .unwrap_or_else(|| "/run/runc".into()),
            systemd_cgroup: std::env::var_os(crio_contract::env::SYSTEMD_CGROUP)
                .is_some_and(|v| v == "1"),
        }
    }

    /// Runs `runtime --root ROOT ARGS…`; with `stdio`, the command's stdio
    /// is those descriptors (they become the container's).
    pub async fn run(&self, args: &[&str], stdio: Option<ChildStdio>) -> std::io::Result<Outcome> {
        let sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(std::io::Error::other)?;
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        let capture = stdio.is_none();
        match stdio {
            Some(io) => {
                cmd.stdin(io.stdin.map_or_else(Stdio::null, Stdio::from))
                    .stdout(Stdio::from(io.stdout))
                    .stderr(Stdio::from(io.stderr));
            }
            None => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        let spawned = cmd.spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = monitor_unsubscribe(sub.id).await;
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0) as i32;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if capture {
            let (out, err) = (child.stdout.take(), child.stderr.take());
            let read_out = async {
                if let Some(mut p) = out {
                    let _ = p.read_to_string(&mut stdout).await;
                }
            };
            let read_err = async {
                if let Some(mut p) = err {
                    let _ = p.read_to_string(&mut stderr).await;
                }
            };
            tokio::join!(read_out, read_err);
        }
        let code = exit_of(sub, pid).await;
        drop(child);
        Ok(Outcome {
            code,
            stdout,
            stderr,
        })
    }
}

impl Runc {
    /// The exec FIFO of created container `id` when the runtime is runc and
    /// the FIFO is there: runc's init waits on it to run the process.
    pub fn exec_fifo(&self, id: &str) -> Option<PathBuf> {
        let fifo = self.root.join(id).join("exec.fifo");
        (self.binary.file_name() == Some("runc".as_ref()) && fifo.exists()).then_some(fifo)
    }
}

/// Starts a created runc container the way `runc start` does, without a
/// runc process: runc's init opens `fifo` for writing, writes "0" and
/// executes the container's process once a reader has it; removing the FIFO
/// then makes runc report the container running. `exited` turns `Some` when
/// the init process is gone (then it never will start).
pub async fn release_exec_fifo<T>(
    fifo: &std::path::Path,
    mut exited: tokio::sync::watch::Receiver<Option<T>>,
) -> Result<(), String> {
    let reader = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(fifo)
        .map_err(|e| format!("open {}: {e}", fifo.display()))?;
    let mut byte = [0u8; 1];
    loop {
        // Looked at before reading: a byte written just before the exit
        // still counts as a start.
        let gone = exited.borrow().is_some();
        let no_writer = match reader.try_read(&mut byte) {
            Ok(1) if byte[0] == b'0' => break,
            Ok(1) => return Err(format!("unexpected byte {} from runc's init", byte[0])),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => return Err(format!("read {}: {e}", fifo.display())),
        };
        if gone {
            return Err("the container's process exited before it started".into());
        }
        // Without a writer (init not at the FIFO yet) a read says end of
        // file at once: look again shortly rather than spin.
        tokio::select! {
            _ = reader.readable(), if !no_writer => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(1)), if no_writer => {}
            changed = exited.changed() => if changed.is_err() {
                return Err("the shim no longer watches the container's process".into());
            }
        }
    }
    std::fs::remove_file(fifo).map_err(|e| format!("remove {}: {e}", fifo.display()))
}
