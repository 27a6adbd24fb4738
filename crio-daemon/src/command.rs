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
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    // Read beside the wait, so a full pipe cannot stall the child.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = reader.join().ok()?;
                return status.success().then_some(out);
            }
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                tracing::warn!(command = ?cmd, "killed at its deadline of {deadline:?}");
                let _ = child.kill();
                let _ = child.wait();
                return None;
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
