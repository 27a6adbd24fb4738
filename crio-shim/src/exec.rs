//! Processes started in a running container (`runtime exec`): create (the
//! process file, stdio, attach socket), start, signal, delete. Their exits
//! come from the reaper like the init's but leave no file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use containerd_shim::protos::api;
use crio_attach::channel;
use crio_contract::EXEC_SYNC_OUTPUT_MAX;
use tokio::sync::watch;

use crate::container::{drain, now_exit, read_pid, spawn_pumps};
use crate::error::{Result, ShimError};
use crate::io::{IoOptions, ProcessIo};
use crate::runtime::{Exit, Stdio};
use crate::tasks::Tasks;

/// A process started in a running container.
pub struct ExecProcess {
    process_file: PathBuf,
    terminal: bool,
    /// Its stdio.
    pub io: Arc<ProcessIo>,
    /// Its pid once started, 0 before.
    pub pid: AtomicU32,
    /// Its exit.
    pub exited: watch::Receiver<Option<Exit>>,
    exit_tx: watch::Sender<Option<Exit>>,
}

/// Where an exec's stdin comes from: an absolute path is a FIFO (as ctr
/// passes), any other non-empty value means attach clients. Output into
/// regular files (the daemon's ExecSync) stops at the cap the daemon reads.
fn exec_io_options(req: &api::ExecProcessRequest) -> IoOptions {
    let fifo = req.stdin.starts_with('/');
    IoOptions {
        log: None,
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        stdin_fifo: if fifo {
            req.stdin.clone()
        } else {
            String::new()
        },
        stdin: !req.stdin.is_empty() && !fifo,
        stdin_once: true,
        file_max: Some(EXEC_SYNC_OUTPUT_MAX),
    }
}

/// Whether an exec id can name files (`exec-ID.json`) and sockets.
fn plain(exec_id: &str) -> bool {
    !exec_id.is_empty()
        && exec_id.len() <= 64
        && exec_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

impl Tasks {
    /// Prepares exec `req.exec_id` in container `req.id`: its process file,
    /// stdio and attach socket; it runs at `start_exec`.
    pub async fn exec(&self, req: &api::ExecProcessRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let spec = req.spec.as_ref().ok_or(ShimError::NoProcessSpec)?;
        if !plain(&req.exec_id) {
            return Err(ShimError::ExecIdNotPlain(req.exec_id.clone()));
        }
        let key = (req.id.clone(), req.exec_id.clone());
        let exists = || ShimError::ExecExists {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
        };
        if self.execs.lock().contains_key(&key) {
            return Err(exists());
        }
        let process_file = c.bundle.join(format!("exec-{}.json", req.exec_id));
        tokio::fs::write(&process_file, &spec.value)
            .await
            .map_err(|e| ShimError::io("write exec spec", e))?;
        let io = ProcessIo::new(exec_io_options(req))
            .await
            .map_err(|source| ShimError::Stdio {
                what: "exec",
                source,
            })?;
        let (exit_tx, exited) = watch::channel(None);
        let attach = crio_attach::attach_path(&self.socket_dir, &req.id, &req.exec_id);
        io.clone()
            .serve_attach(attach, exited.clone())
            .await
            .map_err(|e| ShimError::io("attach socket", e))?;
        let exec = Arc::new(ExecProcess {
            process_file,
            terminal: req.terminal,
            io,
            pid: AtomicU32::new(0),
            exited,
            exit_tx,
        });
        let mut execs = self.execs.lock();
        if execs.contains_key(&key) {
            return Err(exists());
        }
        execs.insert(key, exec);
        Ok(())
    }

    /// Starts an exec process with its stdio set up at `exec`; its pid.
    pub async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
        let bundle = self.container(id)?.bundle.clone();
        let e = self.exec_process(id, exec_id)?;
        let watch = self.runtime.watch_exits().await?;
        let pid_file = bundle.join(format!("exec-{exec_id}.pid"));
        let launched = async {
            if e.terminal {
                let socket = self
                    .socket_dir
                    .join(format!("{}.console", crate::console::short(exec_id)));
                let launch = |stdio| self.runtime.exec(id, &e.process_file, &pid_file, stdio);
                let master = crate::console::with_console(&socket, launch).await?;
                let reader =
                    e.io.terminal(master)
                        .await
                        .map_err(|err| ShimError::io("exec terminal", err))?;
                Ok(vec![(reader, channel::STDOUT)])
            } else {
                let (child, [out, err]) =
                    e.io.pipes()
                        .await
                        .map_err(|err| ShimError::io("exec pipes", err))?;
                let stdio = Stdio::Pipes(child);
                self.runtime
                    .exec(id, &e.process_file, &pid_file, stdio)
                    .await?;
                Ok(vec![(out, channel::STDOUT), (err, channel::STDERR)])
            }
        };
        let outputs = match launched.await {
            Ok(outputs) => outputs,
            Err(err) => {
                watch.cancel().await;
                return Err(err);
            }
        };
        let Some(pid) = read_pid(&pid_file).await else {
            watch.cancel().await;
            return Err(ShimError::NoPidFile("exec "));
        };
        let _ = tokio::fs::remove_file(&pid_file).await;
        e.pid.store(pid, Ordering::SeqCst);
        let pumps = spawn_pumps(&e.io, outputs);
        tokio::spawn(async move {
            let code = watch.exit_of(pid).await;
            drain(pumps).await;
            e.io.finish(code).await;
            let _ = e.exit_tx.send(Some(now_exit(code as u32)));
        });
        Ok(pid)
    }

    /// Signals a started exec that has not exited; nothing otherwise.
    pub fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        let e = self.exec_process(id, exec_id)?;
        let pid = e.pid.load(Ordering::SeqCst);
        if pid > 0 && e.exited.borrow().is_none() {
            let signal = nix::sys::signal::Signal::try_from(signal as i32)
                .map_err(|_| ShimError::BadSignal(signal))?;
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
        Ok(())
    }

    /// Forgets an exec; its pid and exit (137 if it had not exited).
    pub async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<(u32, Exit)> {
        let e = self.exec_process(id, exec_id)?;
        let exit = *e.exited.borrow();
        if exit.is_none() {
            // Never started, or still running: its attach server ends.
            let _ = e.exit_tx.send(Some(now_exit(137)));
        }
        let _ = tokio::fs::remove_file(&e.process_file).await;
        self.execs
            .lock()
            .remove(&(id.to_string(), exec_id.to_string()));
        Ok((
            e.pid.load(Ordering::SeqCst),
            exit.unwrap_or_else(|| now_exit(137)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_must_be_plain_names() {
        assert!(plain("abc-1_2"));
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!plain(bad), "{bad}");
        }
    }
}
