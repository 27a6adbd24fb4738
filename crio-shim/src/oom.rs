//! Whether a container was OOM-killed: its memory cgroup's `oom_kill`
//! counter, read when its init process has exited and before the runtime
//! deletes the cgroup (`memory.oom_control` on cgroup v1, `memory.events`
//! on v2).

use std::path::{Path, PathBuf};

/// The memory cgroup directory of a bundle's container (cgroupfs paths
/// only: systemd `slice:prefix:name` paths are not resolved).
pub fn memory_cgroup(bundle: &Path, cgroup_root: &Path) -> Option<PathBuf> {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).ok()?).ok()?;
    let path = spec["linux"]["cgroupsPath"].as_str()?;
    if !path.starts_with('/') {
        return None;
    }
    let v1 = cgroup_root.join("memory");
    let base = if v1.is_dir() {
        v1
    } else {
        cgroup_root.to_path_buf()
    };
    Some(base.join(path.trim_start_matches('/')))
}

/// The `oom_kill` count of a memory cgroup (v1 or v2 file), 0 if unknown.
pub fn oom_kills(cgroup: &Path) -> u64 {
    ["memory.oom_control", "memory.events"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(cgroup.join(f)).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_paths() {
        let tmp = std::env::temp_dir().join(format!("crio-shim-oom-{}", std::process::id()));
        let cg = tmp.join("memory/crio/c1");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(
            cg.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(oom_kills(&cg), 2);
        let v2 = tmp.join("v2");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(&v2), 1);
        assert_eq!(oom_kills(&tmp.join("none")), 0);
        let bundle = tmp.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            r#"{"linux": {"cgroupsPath": "/crio/c1"}}"#,
        )
        .unwrap();
        assert_eq!(memory_cgroup(&bundle, &tmp), Some(cg.clone()));
        std::fs::write(
            bundle.join("config.json"),
            r#"{"linux": {"cgroupsPath": "system.slice:crio:c1"}}"#,
        )
        .unwrap();
        assert_eq!(memory_cgroup(&bundle, &tmp), None);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
