//! CheckpointContainer: refused with what the host lacks. A checkpoint needs
//! CRIU driven through the OCI runtime; crio-rs does not checkpoint (it
//! never fakes one), and says whether CRIU is even there.

use super::Containers;
use crate::error::{Error, Result};

impl Containers {
    /// CheckpointContainer of `id` (an existing container), with `path_env`
    /// the daemon's PATH: always refused, naming what is missing.
    pub fn checkpoint(&self, id: &str, path_env: &str) -> Result<()> {
        let r = self.existing(id)?;
        Err(Error::Precondition(refusal(&r.id, path_env)))
    }
}

/// Why container `id` cannot be checkpointed on this host.
fn refusal(id: &str, path_env: &str) -> String {
    match crio_config::find_on_path("criu", path_env) {
        None => format!(
            "checkpoint container {id}: criu not found on PATH ({path_env}): checkpoint/restore needs CRIU installed"
        ),
        Some(criu) => format!(
            "checkpoint container {id}: crio-rs does not checkpoint containers (criu is at {}, but checkpoint/restore is not implemented)",
            criu.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_refusal_names_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let path_env = tmp.path().display().to_string();
        let without = super::refusal("c1", &path_env);
        assert!(without.contains("criu not found on PATH"), "{without}");
        let criu = tmp.path().join("criu");
        std::fs::write(&criu, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&criu, std::fs::Permissions::from_mode(0o755)).unwrap();
        let with = super::refusal("c1", &path_env);
        assert!(
            with.contains("not implemented") && with.contains(&criu.display().to_string()),
            "{with}"
        );
    }
}
