//! A container store's start: the records read back, and what a crash left
//! of containers without one (a create killed half-way) removed.

use std::collections::BTreeMap;
use std::path::Path;

use super::{ContainerRecord, Rootfs};

/// The records under `records_dir` (unreadable ones are skipped).
pub(super) fn load(records_dir: &Path) -> std::io::Result<BTreeMap<String, ContainerRecord>> {
    let mut records = BTreeMap::new();
    for entry in std::fs::read_dir(records_dir)?.flatten() {
        if let Some(r) = std::fs::read(entry.path().join("record.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<ContainerRecord>(&d).ok())
        {
            records.insert(r.id.to_string(), r);
        }
    }
    Ok(records)
}

/// Removes what a crash left of containers that have no record: the
/// runtime's container, the rootfs mount, the bundle and the writable layer.
pub(super) fn sweep_orphans(
    config: &crio_config::Config,
    records_dir: &Path,
    run_dir: &Path,
    records: &BTreeMap<String, ContainerRecord>,
    rootfs: &dyn Rootfs,
) {
    let ids = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| !records.contains_key(id))
            .collect()
    };
    // Which handler ran it is in no record: each OCI runtime forgets it.
    let runtimes: Vec<_> = config
        .runtime
        .runtimes
        .values()
        .filter(|h| h.kind() == crio_config::RuntimeType::Oci && h.runtime_path.is_file())
        .collect();
    for id in ids(run_dir) {
        for h in &runtimes {
            let _ = crate::command::output_within(
                std::process::Command::new(&h.runtime_path)
                    .arg("--root")
                    .arg(&h.runtime_root)
                    .args(["delete", "--force", &id]),
                crate::command::RUNTIME_DEADLINE,
            );
        }
        let bundle = run_dir.join(&id);
        rootfs.release(&bundle.join("rootfs"));
        match std::fs::remove_dir_all(&bundle) {
            Ok(()) => {
                tracing::info!(container = %id, "removed the bundle of a container without a record")
            }
            Err(e) => tracing::warn!(container = %id, "remove orphaned bundle: {e}"),
        }
    }
    for id in ids(records_dir) {
        if let Err(e) = std::fs::remove_dir_all(records_dir.join(&id)) {
            tracing::warn!(container = %id, "remove orphaned container directory: {e}");
        }
    }
}
