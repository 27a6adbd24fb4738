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
            binary: std::env::var_os("CRIO_RUNTIME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "runc".into()),
            root: std::env::var_os("CRIO_RUNTIME_ROOT")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/run/runc".into()),
            systemd_cgroup: std::env::var_os("CRIO_SYSTEMD_CGROUP").is_some_and(|v| v == "1"),
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
