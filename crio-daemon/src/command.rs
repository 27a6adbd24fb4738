//! Helper programs the daemon runs itself at start-up (the OCI runtime's
//! `features` and `delete --force`), each under a deadline.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a runtime command run at start-up may take.
pub const RUNTIME_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `cmd` and returns its standard output when it succeeds within
/// `deadline`; None when it cannot start, fails, or is still running at the
/// deadline (it is then killed and reaped).
pub fn output_within(cmd: &mut Command, deadline: Duration) -> Option<Vec<u8>> {
    run_within(cmd, deadline).ok()
}

/// Like [`output_within`], with why it failed: it could not start, its
/// exit status and the start of its error output, or the deadline.
pub fn run_within(cmd: &mut Command, deadline: Duration) -> Result<Vec<u8>, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    // Read beside the wait, so a full pipe cannot stall the child.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                if status.success() {
                    return Ok(out);
                }
                let text = String::from_utf8_lossy(if err.is_empty() { &out } else { &err });
                let text: String = text.trim().chars().take(200).collect();
                return Err(format!("{status}: {text}"));
            }
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                tracing::warn!(command = ?cmd, "killed at its deadline of {deadline:?}");
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed at its deadline of {deadline:?}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_of_a_quick_command() {
        let out = output_within(Command::new("sh").args(["-c", "echo hi"]), RUNTIME_DEADLINE);
        assert_eq!(out.as_deref(), Some(&b"hi\n"[..]));
        let failed = output_within(
            Command::new("sh").args(["-c", "echo no; exit 1"]),
            RUNTIME_DEADLINE,
        );
        assert_eq!(failed, None);
        let why = run_within(
            Command::new("sh").args(["-c", "echo why >&2; exit 3"]),
            RUNTIME_DEADLINE,
        )
        .unwrap_err();
        assert!(why.contains("3") && why.ends_with("why"), "{why}");
        assert_eq!(
            output_within(&mut Command::new("/nonexistent"), RUNTIME_DEADLINE),
            None
        );
    }

    #[test]
    fn a_hung_command_is_killed_at_the_deadline() {
        let started = Instant::now();
        let out = output_within(
            Command::new("sh").args(["-c", "exec sleep 60"]),
            Duration::from_millis(200),
        );
        assert_eq!(out, None);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
