//! What proves that a container's init exited: the exit file its shim
//! writes first thing, a TaskExit event, its shim's answer, or the process
//! itself gone (no such pid, a zombie, or another process under its pid).
//! A shim that does not answer proves nothing.

use std::path::Path;

use crio_contract::bundle::{EXIT_FILE, OOM_FILE, parse_exit_record};

use super::store::write_record;
use super::{ContainerRecord, ContainerState, Containers};
use crate::ids::Id;

/// The CRI reason of a container whose exit nobody recorded because its
/// pod's shim (its monitor) died first.
pub const SHIM_LOST: &str = "ShimLost";

/// The exit code reported when the exit was not recorded.
const UNRECORDED_EXIT: i32 = 255;

impl Containers {
    /// Records the exit of container `id`'s init from evidence (a TaskExit
    /// event, the exit file, the shim's answer): in memory at once, on disk
    /// after, off the executor when called on one. Never waits for a shim;
    /// the first exit recorded stays. An OOM kill is also taken from the
    /// bundle's `oom` file, which the shim writes before TaskOOM.
    pub fn record_exit(&self, id: &str, exit_code: i32, exited_at: i64, oom: bool) {
        let Some(r) = self.get(id) else { return };
        let oom = oom || self.bundle(&r.id).join(OOM_FILE).exists();
        self.record_end(&r.id, move |r| {
            r.exit_code = exit_code;
            r.finished_at = match exited_at {
                0 => crio_api::time::now_nanos(),
                at => at,
            };
            if oom && !r.oom_killed {
                crate::metrics::global().container_oom(&r.name);
            }
            r.oom_killed |= oom;
        });
    }

    /// Records that container `id`'s init is gone while its pod's shim is
    /// dead too: nobody recorded its exit code, and the reason says why.
    pub(super) fn record_lost(&self, id: &str) {
        tracing::warn!(
            container = id,
            "its process and its shim are gone: exit not recorded"
        );
        self.record_end(id, |r| {
            crate::metrics::global().monitor_stopped(&r.name);
            r.exit_code = UNRECORDED_EXIT;
            r.finished_at = crio_api::time::now_nanos();
            r.reason = SHIM_LOST.into();
            r.message =
                "the pod's shim (the container's monitor) died: the exit code was not recorded"
                    .into();
        });
    }

    /// Marks a container that has not exited yet as exited, as `set` says.
    fn record_end(&self, id: &str, set: impl FnOnce(&mut ContainerRecord) + Send + 'static) {
        let Some(change) = self.records.update(id, |r| {
            if r.state == ContainerState::Exited {
                return false;
            }
            r.state = ContainerState::Exited;
            r.message.clear();
            set(r);
            true
        }) else {
            return;
        };
        self.announce_state(&change.record);
        let dir = self.records_dir.clone();
        let write = move || {
            if let Err(e) = change.persist(|r| write_record(&dir, r)) {
                tracing::warn!(container = %change.record.id, "save the exit: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(write)),
            Err(_) => write(),
        }
    }

    /// The exit its shim recorded in the bundle, if any.
    pub(super) fn exit_file(&self, id: &Id) -> Option<(i32, i64)> {
        let text = std::fs::read_to_string(self.bundle(id).join(EXIT_FILE)).ok()?;
        parse_exit_record(&text)
    }
}

/// The state letter and start time of process `pid` (`/proc/<pid>/stat`
/// fields 3 and 22), None when there is no such process.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command (field 2) is in parentheses and may hold anything.
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.parse().ok()?))
}

/// The start time of a live process `pid` (0 when it is gone already).
pub(super) fn start_time(pid: u32) -> u64 {
    match stat(pid) {
        Some((state, start)) if !matches!(state, 'Z' | 'X') => start,
        _ => 0,
    }
}

/// Whether the process `pid` that started at `start` (0: unknown) is
/// proven gone: no such pid, a zombie, or another process under its pid.
pub(super) fn init_gone(pid: u32, start: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match stat(pid) {
        None => true,
        Some(('Z' | 'X', _)) => true,
        Some((_, now)) => start != 0 && now != start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_gone_when_absent_a_zombie_or_another() {
        let me = std::process::id();
        let started = start_time(me);
        assert!(started > 0);
        assert!(!init_gone(me, started));
        assert!(!init_gone(me, 0), "unknown start: the pid decides");
        assert!(init_gone(me, started + 1), "another process under the pid");
        assert!(!init_gone(0, 0), "never started");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited, not reaped yet: a zombie.
        while stat(pid).is_some_and(|(s, _)| s != 'Z') {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(init_gone(pid, 0));
        assert_eq!(start_time(pid), 0);
        child.wait().unwrap();
        assert!(init_gone(pid, 0));
    }
}
