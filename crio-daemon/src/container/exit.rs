//! An exit recorded from evidence (a TaskExit event): no shim call.

use super::{ContainerState, Containers};

impl Containers {
    /// Records that container `id`'s init exited with `exit_code` at
    /// `exited_at` (CRI nanoseconds), OOM-killed when `oom`. Cheap: the
    /// in-memory record and its file, no shim call; a container already
    /// recorded exited, or gone, is left as it is.
    pub fn record_exit(&self, id: &str, exit_code: i32, exited_at: i64, oom: bool) {
        let Some(mut r) = self.get(id) else { return };
        if r.state == ContainerState::Exited {
            return;
        }
        r.state = ContainerState::Exited;
        r.exit_code = exit_code;
        r.finished_at = exited_at;
        r.oom_killed |= oom;
        if let Err(e) = self.save(&r) {
            tracing::warn!(container = %r.id, "record the exit: {e}");
        }
    }
}
