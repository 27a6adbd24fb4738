//! Running the OCI runtime's CLI. The shim is a subreaper whose SIGCHLD
//! handler reaps every child, so a runtime command's exit status comes from
//! the framework's exit monitor, never from waiting on the child ourselves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use containerd_shim::asynchronous::monitor::{
    Subscription, monitor_subscribe, monitor_unsubscribe,
};
use containerd_shim::monitor::{Subject, Topic};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use crate::error::{Result, ShimError};
use crate::io::ChildStdio;
use crate::runtime::{CreateArgs, Exit, ExitWatch, Runtime, Stdio};

/// Waits for `pid`'s exit on a subscription made before it could exit, and
/// ends the subscription; 255 if the monitor went away first.
pub async fn exit_of(mut sub: Subscription, pid: i32) -> i32 {
    let code = exit_event(&mut sub, pid).await.unwrap_or(255);
    let _ = monitor_unsubscribe(sub.id).await;
    code
}

/// The exit code of `pid` from `sub`; None if the monitor went away first.
async fn exit_event(sub: &mut Subscription, pid: i32) -> Option<i32> {
    while let Some(event) = sub.rx.recv().await {
        if matches!(event.subject, Subject::Pid(p) if p == pid) {
            return Some(event.exit_code);
        }
    }
    None
}

/// How long a runtime command other than `create` may run before it is
/// killed and its operation fails: shorter than the daemon's deadline for
/// a task call, so the daemon hears why instead of timing out itself.
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the exit of a runtime command killed at its deadline is
/// waited for (the reaper reports it at once unless the process is stuck
/// in the kernel).
const KILLED_EXIT_WAIT: Duration = Duration::from_secs(2);

/// The runtime binary and its state root, from the environment the daemon
/// starts the shim with (`CRIO_RUNTIME`, `CRIO_RUNTIME_ROOT`, and
/// `CRIO_SYSTEMD_CGROUP=1` for the systemd cgroup driver).
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
    /// The deadline of every command but `create` ([`RUNTIME_TIMEOUT`]).
    timeout: Duration,
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
            timeout: RUNTIME_TIMEOUT,
        }
    }

    /// The runtime binary's file name (`runc`), which names its spans.
    pub fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into())
    }

    /// Runs `runtime --root ROOT ARGS…`; with `stdio`, the command's stdio
    /// is those descriptors (they become the container's). With `deadline`,
    /// a command still running then is killed and the run fails with
    /// [`std::io::ErrorKind::TimedOut`].
    pub async fn run(
        &self,
        args: &[&str],
        stdio: Option<ChildStdio>,
        deadline: Option<Duration>,
    ) -> std::io::Result<Outcome> {
        let mut sub = monitor_subscribe(Topic::Pid)
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
                cmd.stdin(
                    io.stdin
                        .map_or_else(std::process::Stdio::null, std::process::Stdio::from),
                )
                .stdout(std::process::Stdio::from(io.stdout))
                .stderr(std::process::Stdio::from(io.stderr));
            }
            None => {
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
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
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let done = async {
            if capture {
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
            exit_event(&mut sub, pid).await
        };
        let code = match deadline {
            None => done.await,
            Some(limit) => match tokio::time::timeout(limit, done).await {
                Ok(code) => code,
                Err(_) => {
                    // Not reaped yet (its exit was not reported): the pid
                    // is still the command's.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    let _ = tokio::time::timeout(KILLED_EXIT_WAIT, exit_event(&mut sub, pid)).await;
                    let _ = monitor_unsubscribe(sub.id).await;
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {limit:?}: killed"),
                    ));
                }
            },
        };
        let _ = monitor_unsubscribe(sub.id).await;
        drop(child);
        Ok(Outcome {
            code: code.unwrap_or(255),
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

/// Why runc's init could not be released through its exec FIFO.
#[derive(Debug, thiserror::Error)]
pub enum FifoError {
    /// The FIFO could not be opened.
    #[error("open {}: {source}", path.display())]
    Open {
        /// The FIFO.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// runc's init wrote something else than "0".
    #[error("unexpected byte {0} from runc's init")]
    Byte(u8),
    /// The FIFO could not be read.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The FIFO.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The init exited first.
    #[error("the container's process exited before it started")]
    Exited,
    /// The exit watch went away.
    #[error("the shim no longer watches the container's process")]
    Unwatched,
    /// The FIFO could not be removed.
    #[error("remove {}: {source}", path.display())]
    Remove {
        /// The FIFO.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Starts a created runc container the way `runc start` does, without a
/// runc process: runc's init opens `fifo` for writing, writes "0" and
/// executes the container's process once a reader has it; removing the FIFO
/// then makes runc report the container running. `exited` turns `Some` when
/// the init process is gone (then it never will start).
pub async fn release_exec_fifo<T>(
    fifo: &Path,
    mut exited: tokio::sync::watch::Receiver<Option<T>>,
) -> Result<(), FifoError> {
    let path = || fifo.to_path_buf();
    let reader = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(fifo)
        .map_err(|source| FifoError::Open {
            path: path(),
            source,
        })?;
    let mut byte = [0u8; 1];
    loop {
        // Looked at before reading: a byte written just before the exit
        // still counts as a start.
        let gone = exited.borrow().is_some();
        let no_writer = match reader.try_read(&mut byte) {
            Ok(1) if byte[0] == b'0' => break,
            Ok(1) => return Err(FifoError::Byte(byte[0])),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(source) => {
                return Err(FifoError::Read {
                    path: path(),
                    source,
                });
            }
        };
        if gone {
            return Err(FifoError::Exited);
        }
        // Without a writer (init not at the FIFO yet) a read says end of
        // file at once: look again shortly rather than spin.
        tokio::select! {
            _ = reader.readable(), if !no_writer => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(1)), if no_writer => {}
            changed = exited.changed() => if changed.is_err() {
                return Err(FifoError::Unwatched);
            }
        }
    }
    tokio::fs::remove_file(fifo)
        .await
        .map_err(|source| FifoError::Remove {
            path: path(),
            source,
        })
}

/// The real exit watch: a subscription to the framework's reaper.
struct Reaped(Subscription);

#[async_trait]
impl ExitWatch for Reaped {
    async fn exit_of(self: Box<Self>, pid: u32) -> i32 {
        exit_of(self.0, pid as i32).await
    }

    async fn cancel(self: Box<Self>) {
        let _ = monitor_unsubscribe(self.0.id).await;
    }
}

impl Runc {
    /// Runs `args`; a non-zero exit is an error with the runtime's stderr.
    async fn checked(&self, what: impl Fn() -> String, args: &[&str]) -> Result<Outcome> {
        let out = self
            .run(args, None, Some(self.timeout))
            .await
            .map_err(|source| ShimError::RunRuntime {
                what: what(),
                source,
            })?;
        if out.code != 0 {
            return Err(ShimError::Runtime {
                what: what(),
                message: out.stderr.trim().to_string(),
            });
        }
        Ok(out)
    }

    /// Runs `args` with `stdio` (until `deadline`); a console socket goes
    /// before the id, the last argument.
    async fn launch(
        &self,
        mut args: Vec<String>,
        stdio: Stdio,
        deadline: Option<Duration>,
    ) -> std::io::Result<Outcome> {
        let id = args.pop().unwrap_or_default();
        let child = match stdio {
            Stdio::Pipes(child) => Some(child),
            Stdio::Console(socket) => {
                args.extend(["--console-socket".into(), socket]);
                None
            }
        };
        args.push(id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args, child, deadline).await
    }
}

#[async_trait]
impl Runtime for Runc {
    async fn watch_exits(&self) -> Result<Box<dyn ExitWatch>> {
        let sub = monitor_subscribe(Topic::Pid)
            .await
            .map_err(ShimError::Monitor)?;
        Ok(Box::new(Reaped(sub)))
    }

    async fn create(&self, c: &CreateArgs<'_>, stdio: Stdio) -> Result<()> {
        let path = |p: &Path| p.display().to_string();
        let args = vec![
            "--log".into(),
            path(c.log),
            "--log-format".into(),
            "json".into(),
            "create".into(),
            "--bundle".into(),
            path(c.bundle),
            "--pid-file".into(),
            path(c.pid_file),
            c.id.to_string(),
        ];
        // No deadline: a create pulls in the container's whole set-up
        // (mounts, hooks, cgroups) and fails on its own.
        let message = match self.launch(args, stdio, None).await {
            Ok(o) if o.code == 0 => return Ok(()),
            Ok(_) => runtime_error(c.log).await,
            Err(e) => e.to_string(),
        };
        Err(ShimError::Runtime {
            what: format!("create container {}", c.id),
            message,
        })
    }

    async fn start(&self, id: &str, exited: watch::Receiver<Option<Exit>>) -> Result<()> {
        match self.exec_fifo(id) {
            // runc: released here, one runc process less per container.
            Some(fifo) => {
                release_exec_fifo(&fifo, exited)
                    .await
                    .map_err(|source| ShimError::Start {
                        id: id.to_string(),
                        source,
                    })
            }
            None => self
                .checked(|| format!("start container {id}"), &["start", id])
                .await
                .map(drop),
        }
    }

    async fn exec(&self, id: &str, process: &Path, pid_file: &Path, stdio: Stdio) -> Result<()> {
        let args = vec![
            "exec".into(),
            "--process".into(),
            process.display().to_string(),
            "--pid-file".into(),
            pid_file.display().to_string(),
            "--detach".into(),
            id.to_string(),
        ];
        let what = || format!("exec in container {id}");
        let outcome = self
            .launch(args, stdio, Some(self.timeout))
            .await
            .map_err(|source| ShimError::RunRuntime {
                what: what(),
                source,
            })?;
        if outcome.code != 0 {
            let detail = outcome.stderr.trim();
            return Err(ShimError::Runtime {
                what: what(),
                message: format!(
                    "the runtime exited with {}{}{detail}",
                    outcome.code,
                    if detail.is_empty() { "" } else { ": " },
                ),
            });
        }
        Ok(())
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        self.checked(|| format!("kill container {id}"), &args)
            .await
            .map(drop)
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.checked(
            || format!("delete container {id}"),
            &["delete", "--force", id],
        )
        .await
        .map(drop)
    }

    async fn ps(&self, id: &str) -> Result<Option<Vec<u32>>> {
        let out = self
            .run(&["ps", "--format", "json", id], None, Some(self.timeout))
            .await
            .map_err(|source| ShimError::RunRuntime {
                what: format!("list the processes of container {id}"),
                source,
            })?;
        Ok((out.code == 0)
            .then(|| serde_json::from_str(out.stdout.trim()).ok())
            .flatten())
    }

    async fn pause(&self, id: &str, paused: bool) -> Result<()> {
        let verb = if paused { "pause" } else { "resume" };
        self.checked(|| format!("{verb} container {id}"), &[verb, id])
            .await
            .map(drop)
    }

    async fn update(&self, id: &str, resources: &Path) -> Result<()> {
        let path = resources.display().to_string();
        self.checked(
            || format!("update container {id}"),
            &["update", "--resources", &path, id],
        )
        .await
        .map(drop)
    }
}

/// The last error the runtime logged (its JSON log), or a generic message.
async fn runtime_error(log: &Path) -> String {
    tokio::fs::read_to_string(log)
        .await
        .ok()
        .and_then(|text| {
            let entries: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let message = |level: &str| {
                entries
                    .iter()
                    .filter(|v| v["level"] == level)
                    .find_map(|v| v["msg"].as_str().map(String::from))
            };
            let last_error = entries
                .iter()
                .rev()
                .filter(|v| v["level"] == "error")
                .find_map(|v| v["msg"].as_str().map(String::from));
            // runc's C part (nsexec) says why it failed at level fatal;
            // the Go part's error after it only says that it did.
            match (message("fatal"), last_error) {
                (Some(fatal), Some(error)) => Some(format!("{error}: {fatal}")),
                (fatal, error) => error.or(fatal),
            }
        })
        .unwrap_or_else(|| "the runtime failed without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gone, or a zombie: killed either way.
    fn dead(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[tokio::test]
    async fn hung_runtime_commands_fail_at_their_deadline() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (binary, pid_file) = (tmp.path().join("runc"), tmp.path().join("pid"));
        let script = format!(
            "#!/bin/sh\necho $$ >> {}\nexec sleep 600\n",
            pid_file.display()
        );
        std::fs::write(&binary, script).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runc = Runc {
            binary,
            root: tmp.path().join("root"),
            systemd_cgroup: false,
            timeout: Duration::from_millis(200),
        };
        let calls: [(&str, _); 3] = [
            ("kill container c1", runc.kill("c1", 15, false).await.err()),
            ("pause container c1", runc.pause("c1", true).await.err()),
            (
                "list the processes of container c1",
                runc.ps("c1").await.err(),
            ),
        ];
        for (what, err) in calls {
            let err = err.unwrap_or_else(|| panic!("{what}: no error"));
            assert!(
                matches!(&err, ShimError::RunRuntime { source, .. }
                    if source.kind() == std::io::ErrorKind::TimedOut),
                "{err:?}"
            );
            assert!(err.to_string().starts_with(what), "{err}");
        }
        // Each fake runtime was killed (the test has no reaper: a zombie
        // at worst, reaped here).
        let pids = std::fs::read_to_string(&pid_file).unwrap();
        let pids: Vec<i32> = pids.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(pids.len(), 3);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !pids.iter().all(|p| dead(*p)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for pid in pids {
            assert!(dead(pid), "runtime {pid} still runs");
            let flags = Some(nix::sys::wait::WaitPidFlag::WNOHANG);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), flags);
        }
    }
}
