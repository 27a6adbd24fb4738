//! Running a plugin process under a deadline: in a process group of its
//! own, so that when time is up the plugin and whatever it started (which
//! would hold its output pipes open) are killed together.

use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Largest output (stdout, stderr each) kept; the rest is read and dropped.
const MAX_OUTPUT: u64 = 1 << 20;

/// Why a run gave no output.
#[derive(Debug)]
pub(crate) enum RunError {
    /// Spawning, feeding or waiting for the process failed (what, why).
    Io(&'static str, std::io::Error),
    /// The deadline passed; the process group was killed.
    Timeout,
}

/// Kills a process group when dropped, unless disarmed: a run that times
/// out, or whose caller goes away, leaves nothing behind.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs `cmd` with `input` on its stdin; its status, stdout and stderr, or
/// [`RunError::Timeout`] when it did not end within `timeout` (then it
/// and its process group are killed and reaped).
pub(crate) async fn output(
    mut cmd: tokio::process::Command,
    input: &[u8],
    timeout: Duration,
) -> Result<Output, RunError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Io("run", e))?;
    let mut group = GroupGuard(child.id().map(|pid| Pid::from_raw(pid as i32)));
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let talk = async {
        if let Some(mut stdin) = stdin {
            // A plugin may exit without reading its input: its status decides.
            match stdin.write_all(input).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(RunError::Io("write config to", e));
                }
                _ => {}
            }
        }
        let (stdout, stderr) = tokio::join!(read_capped(stdout), read_capped(stderr));
        let status = child
            .wait()
            .await
            .map_err(|e| RunError::Io("wait for", e))?;
        Ok(Output {
            status,
            stdout: stdout.map_err(|e| RunError::Io("read output of", e))?,
            stderr: stderr.map_err(|e| RunError::Io("read errors of", e))?,
        })
    };
    match tokio::time::timeout(timeout, talk).await {
        Ok(out) => {
            // Reaped (or failed): the group ID may no longer be ours.
            group.0 = None;
            out
        }
        Err(_) => {
            drop(group);
            // SIGKILLed: the wait is short.
            let _ = child.wait().await;
            Err(RunError::Timeout)
        }
    }
}

/// Everything `pipe` gives, the first [`MAX_OUTPUT`] bytes kept.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    if let Some(mut pipe) = pipe {
        (&mut pipe).take(MAX_OUTPUT).read_to_end(&mut kept).await?;
        tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await?;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[tokio::test]
    async fn output_status_and_input() {
        let out = output(
            sh("cat; echo err >&2; exit 3"),
            b"hello",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[tokio::test]
    async fn a_hung_run_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // The grandchild holds stdout open: killing the shell alone would
        // leave the read hanging.
        let script = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
        let started = std::time::Instant::now();
        let err = output(sh(&script), b"", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::Timeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The sleep is no child of ours: it is gone once its parent shell
        // was reaped and init reaped it, or it is a zombie at worst.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(), "the plugin's child {pid} was not killed");
    }
}
