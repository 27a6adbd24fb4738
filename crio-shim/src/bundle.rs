//! What the shim takes from a container's bundle: its config.json, read
//! once at create (annotations from the daemon, the cgroup path).

use std::path::{Path, PathBuf};

use crio_contract::annotations;

/// The parts of a bundle's config.json the shim uses.
#[derive(Debug, Default)]
pub struct BundleSpec {
    /// The CRI log file.
    pub log_path: Option<PathBuf>,
    /// The directory the log path is resolved below.
    pub log_directory: Option<PathBuf>,
    /// The limit on the log file's size.
    pub log_size_max: Option<u64>,
    /// The container keeps stdin open.
    pub stdin: bool,
    /// Stdin closes after the first attach ends.
    pub stdin_once: bool,
    /// The container's cgroup (a cgroupfs path).
    pub cgroup: Option<PathBuf>,
    /// Its memory cgroup directory, watched for OOM kills.
    pub memory_cgroup: Option<PathBuf>,
}

impl BundleSpec {
    /// Reads `bundle/config.json`; a missing or unreadable one gives the
    /// defaults (no log, no cgroup).
    pub async fn read(bundle: &Path, cgroup_root: &Path) -> Self {
        let Ok(text) = tokio::fs::read(bundle.join("config.json")).await else {
            return Self::default();
        };
        let mut spec = Self::parse(&text);
        if let Some(cgroup) = &spec.cgroup {
            let v1 = cgroup_root.join("memory");
            let base = if tokio::fs::metadata(&v1).await.is_ok_and(|m| m.is_dir()) {
                v1
            } else {
                cgroup_root.to_path_buf()
            };
            spec.memory_cgroup = Some(base.join(cgroup.strip_prefix("/").unwrap_or(cgroup)));
        }
        spec
    }

    /// The fields of a config.json's text.
    fn parse(text: &[u8]) -> Self {
        let Ok(spec) = serde_json::from_slice::<serde_json::Value>(text) else {
            return Self::default();
        };
        let annotation = |key: &str| spec["annotations"][key].as_str().unwrap_or_default();
        let path = |key: &str| {
            Some(annotation(key))
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        Self {
            log_path: path(annotations::LOG_PATH),
            log_directory: path(annotations::LOG_DIRECTORY),
            log_size_max: annotation(annotations::LOG_SIZE_MAX)
                .parse::<u64>()
                .ok()
                .filter(|max| *max > 0),
            stdin: annotation(annotations::STDIN) == "true",
            stdin_once: annotation(annotations::STDIN_ONCE) == "true",
            cgroup: spec["linux"]["cgroupsPath"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(crio_cgroups::cgroupfs_path),
            memory_cgroup: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cgroups_follow_the_cgroup_version() {
        let tmp = tempfile::tempdir().unwrap();
        let (bundle, root) = (tmp.path().join("bundle"), tmp.path().join("cg"));
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::create_dir_all(root.join("memory")).unwrap();
        let write = |text: &str| std::fs::write(bundle.join("config.json"), text).unwrap();
        write(r#"{"linux": {"cgroupsPath": "/crio/c1"}}"#);
        let spec = BundleSpec::read(&bundle, &root).await;
        assert_eq!(spec.cgroup.as_deref(), Some(Path::new("/crio/c1")));
        assert_eq!(spec.memory_cgroup, Some(root.join("memory/crio/c1")));
        write(r#"{"linux": {"cgroupsPath": "system.slice:crio:c1"}}"#);
        assert_eq!(
            BundleSpec::read(&bundle, &root).await.memory_cgroup,
            Some(root.join("memory/system.slice/crio-c1.scope"))
        );
        std::fs::remove_dir(root.join("memory")).unwrap();
        assert_eq!(
            BundleSpec::read(&bundle, &root).await.memory_cgroup,
            Some(root.join("system.slice/crio-c1.scope"))
        );
    }

    #[test]
    fn annotations_and_defaults() {
        let text = format!(
            r#"{{"annotations": {{"{}": "/logs/c/0.log", "{}": "/logs", "{}": "0", "{}": "true"}}}}"#,
            annotations::LOG_PATH,
            annotations::LOG_DIRECTORY,
            annotations::LOG_SIZE_MAX,
            annotations::STDIN,
        );
        let spec = BundleSpec::parse(text.as_bytes());
        assert_eq!(spec.log_path.as_deref(), Some(Path::new("/logs/c/0.log")));
        assert_eq!(spec.log_directory.as_deref(), Some(Path::new("/logs")));
        assert_eq!(spec.log_size_max, None);
        assert!(spec.stdin && !spec.stdin_once);
        assert!(spec.cgroup.is_none());
        assert!(BundleSpec::parse(b"not json").log_path.is_none());
    }
}
