//! Reading a cgroup's statistics on cgroup v1 (one hierarchy per
//! controller under `/sys/fs/cgroup/<controller>`) and v2 (the unified
//! hierarchy). Std only, so the per-pod shim can link it cheaply.
//!
//! Paths are cgroupfs paths (`/kubepods/pod1/ctr`); systemd's
//! `slice:prefix:name` form is turned into the slice path systemd uses.

use std::path::{Path, PathBuf};

/// What kubelet asks of a container's or a pod's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Total CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// User CPU time in nanoseconds.
    pub cpu_user_ns: u64,
    /// System CPU time in nanoseconds.
    pub cpu_system_ns: u64,
    /// Memory in use, page cache included, in bytes.
    pub memory_usage: u64,
    /// Usage minus inactive file pages: what kubelet evicts on.
    pub memory_working_set: u64,
    /// Anonymous memory (RSS) in bytes.
    pub memory_rss: u64,
    /// The memory limit in bytes (0: none).
    pub memory_limit: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
    /// Processes in the cgroup.
    pub pids: u64,
    /// The pids limit (0: none).
    pub pids_limit: u64,
}

/// The cgroup hierarchy of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One hierarchy per controller (also "hybrid" hosts).
    V1,
    /// The unified hierarchy.
    V2,
}

/// The host's mode under `root` (normally `/sys/fs/cgroup`).
pub fn mode(root: &Path) -> Mode {
    if root.join("cgroup.controllers").exists() {
        Mode::V2
    } else {
        Mode::V1
    }
}

/// The cgroupfs path of a cgroups path from an OCI spec: absolute paths as
/// they are; systemd's `slice:prefix:name` as `/<parent slices>/<prefix>-<name>.scope`.
pub fn cgroupfs_path(cgroups_path: &str) -> PathBuf {
    if cgroups_path.starts_with('/') {
        return PathBuf::from(cgroups_path);
    }
    let mut parts = cgroups_path.splitn(3, ':');
    let (slice, prefix, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut path = PathBuf::from("/");
    // "a-b-c.slice" lives in a.slice/a-b.slice/a-b-c.slice.
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    if !stem.is_empty() && stem != "-" {
        let mut acc = String::new();
        for (i, part) in stem.split('-').enumerate() {
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(part);
            path.push(format!("{acc}.slice"));
        }
    }
    if !name.is_empty() {
        let unit = if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        path.push(unit);
    }
    path
}

fn read_u64(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.trim();
    if t == "max" {
        return Some(0);
    }
    t.parse().ok()
}

/// `key value` lines of a stat file.
fn read_keyed(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn keyed(stats: &[(String, u64)], key: &str) -> u64 {
    stats
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

/// Above this a v1 limit means "none" (the kernel reports a page-rounded
/// maximum signed value).
const V1_UNLIMITED: u64 = 1 << 62;

/// The statistics of `cgroup` (a cgroupfs path) under `root`; `None` when
/// the cgroup does not exist.
pub fn read(root: &Path, cgroup: &Path) -> Option<Stats> {
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    match mode(root) {
        Mode::V2 => read_v2(&root.join(rel)),
        Mode::V1 => read_v1(root, rel),
    }
}

fn read_v1(root: &Path, rel: &Path) -> Option<Stats> {
    let memory = root.join("memory").join(rel);
    let cpu = root.join("cpuacct").join(rel);
    let pids = root.join("pids").join(rel);
    if !memory.is_dir() && !cpu.is_dir() {
        return None;
    }
    let mem = read_keyed(&memory.join("memory.stat"));
    let usage = read_u64(&memory.join("memory.usage_in_bytes")).unwrap_or(0);
    let inactive = keyed(&mem, "total_inactive_file");
    let limit = read_u64(&memory.join("memory.limit_in_bytes")).unwrap_or(0);
    let ticks = read_keyed(&cpu.join("cpuacct.stat"));
    // cpuacct.stat is in USER_HZ (100 per second on Linux).
    let tick_ns = 10_000_000;
    Some(Stats {
        cpu_usage_ns: read_u64(&cpu.join("cpuacct.usage")).unwrap_or(0),
        cpu_user_ns: keyed(&ticks, "user") * tick_ns,
        cpu_system_ns: keyed(&ticks, "system") * tick_ns,
        memory_usage: usage,
        memory_working_set: usage.saturating_sub(inactive),
        memory_rss: keyed(&mem, "total_rss"),
        memory_limit: if limit >= V1_UNLIMITED { 0 } else { limit },
        page_faults: keyed(&mem, "total_pgfault"),
        major_page_faults: keyed(&mem, "total_pgmajfault"),
        pids: read_u64(&pids.join("pids.current")).unwrap_or(0),
        pids_limit: read_u64(&pids.join("pids.max")).unwrap_or(0),
    })
}

fn read_v2(dir: &Path) -> Option<Stats> {
    if !dir.is_dir() {
        return None;
    }
    let mem = read_keyed(&dir.join("memory.stat"));
    let cpu = read_keyed(&dir.join("cpu.stat"));
    let usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
    Some(Stats {
        cpu_usage_ns: keyed(&cpu, "usage_usec") * 1000,
        cpu_user_ns: keyed(&cpu, "user_usec") * 1000,
        cpu_system_ns: keyed(&cpu, "system_usec") * 1000,
        memory_usage: usage,
        memory_working_set: usage.saturating_sub(keyed(&mem, "inactive_file")),
        memory_rss: keyed(&mem, "anon"),
        memory_limit: read_u64(&dir.join("memory.max")).unwrap_or(0),
        page_faults: keyed(&mem, "pgfault"),
        major_page_faults: keyed(&mem, "pgmajfault"),
        pids: read_u64(&dir.join("pids.current")).unwrap_or(0),
        pids_limit: read_u64(&dir.join("pids.max")).unwrap_or(0),
    })
}

/// The directories of cgroup `cgroup` (a cgroupfs path) under `root`: its
/// one in the unified hierarchy, or its one in every v1 hierarchy (the
/// controllers' directories that are cgroup roots, symlinks skipped).
fn hierarchy_dirs(root: &Path, cgroup: &Path) -> std::io::Result<Vec<PathBuf>> {
    let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
    if mode(root) == Mode::V2 {
        return Ok(vec![root.join(rel)]);
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root)?.flatten() {
        // `cpu` and `cpuacct` are symlinks to `cpu,cpuacct`.
        if entry.file_type().is_ok_and(|t| t.is_dir()) && entry.path().join("cgroup.procs").exists()
        {
            dirs.push(entry.path().join(rel));
        }
    }
    Ok(dirs)
}

/// Moves process `pid` into cgroup `cgroup` (a cgroupfs path; a leaf on
/// v2, which forbids processes in a cgroup with children) under `root`,
/// creating it where needed: in every v1 hierarchy, or in the unified one.
/// It succeeds when one hierarchy took the process.
pub fn join(root: &Path, cgroup: &Path, pid: u32) -> std::io::Result<()> {
    let mut joined = false;
    let mut last_err = None;
    for dir in hierarchy_dirs(root, cgroup)? {
        let write = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
        match write {
            Ok(()) => joined = true,
            Err(e) => last_err = Some(e),
        }
    }
    match (joined, last_err) {
        (false, Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Removes cgroup `cgroup` (empty by now) from every hierarchy under
/// `root`; one that is already gone is no error.
pub fn remove(root: &Path, cgroup: &Path) -> std::io::Result<()> {
    let mut result = Ok(());
    for dir in hierarchy_dirs(root, cgroup)? {
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => result = Err(e),
            _ => {}
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn v1_hierarchies() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let cg = Path::new("/kubepods/c1");
        assert_eq!(read(r, cg), None);
        let mem = r.join("memory/kubepods/c1");
        write(&mem, "memory.usage_in_bytes", "1000\n");
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        write(
            &mem,
            "memory.stat",
            "cache 5\ntotal_rss 600\ntotal_inactive_file 300\ntotal_pgfault 7\ntotal_pgmajfault 2\n",
        );
        let cpu = r.join("cpuacct/kubepods/c1");
        write(&cpu, "cpuacct.usage", "123456789\n");
        write(&cpu, "cpuacct.stat", "user 3\nsystem 1\n");
        write(&r.join("pids/kubepods/c1"), "pids.current", "4\n");
        write(&r.join("pids/kubepods/c1"), "pids.max", "max\n");
        let s = read(r, cg).unwrap();
        assert_eq!(mode(r), Mode::V1);
        assert_eq!(s.cpu_usage_ns, 123_456_789);
        assert_eq!(s.cpu_user_ns, 30_000_000);
        assert_eq!(s.memory_working_set, 700);
        assert_eq!(s.memory_rss, 600);
        assert_eq!(s.memory_limit, 0, "an unlimited v1 limit is none");
        assert_eq!((s.page_faults, s.major_page_faults), (7, 2));
        assert_eq!((s.pids, s.pids_limit), (4, 0));
        write(&mem, "memory.limit_in_bytes", "4096\n");
        assert_eq!(read(r, cg).unwrap().memory_limit, 4096);
    }

    #[test]
    fn v2_unified() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "cgroup.controllers", "cpu memory pids\n");
        let dir = r.join("pod/c1");
        write(&dir, "memory.current", "2000\n");
        write(&dir, "memory.max", "max\n");
        write(
            &dir,
            "memory.stat",
            "anon 900\ninactive_file 500\npgfault 3\n",
        );
        write(
            &dir,
            "cpu.stat",
            "usage_usec 10\nuser_usec 6\nsystem_usec 4\n",
        );
        write(&dir, "pids.current", "2\n");
        write(&dir, "pids.max", "64\n");
        let s = read(r, Path::new("/pod/c1")).unwrap();
        assert_eq!(mode(r), Mode::V2);
        assert_eq!(s.cpu_usage_ns, 10_000);
        assert_eq!(s.memory_working_set, 1500);
        assert_eq!((s.memory_limit, s.memory_rss), (0, 900));
        assert_eq!((s.pids, s.pids_limit), (2, 64));
    }

    #[test]
    fn joining_writes_the_pid_in_every_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for c in ["memory", "pids"] {
            write(&r.join(c), "cgroup.procs", "");
        }
        std::fs::create_dir_all(r.join("unrelated")).unwrap();
        join(r, Path::new("/pod/x"), 42).unwrap();
        for c in ["memory", "pids"] {
            let procs = std::fs::read_to_string(r.join(c).join("pod/x/cgroup.procs")).unwrap();
            assert_eq!(procs, "42");
        }
        assert!(!r.join("unrelated/pod").exists());
    }

    #[test]
    fn removing_takes_the_cgroup_out_of_every_hierarchy_once() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for c in ["memory", "pids"] {
            write(&r.join(c), "cgroup.procs", "");
            std::fs::create_dir_all(r.join(c).join("pod/x")).unwrap();
        }
        remove(r, Path::new("/pod/x")).unwrap();
        for c in ["memory", "pids"] {
            assert!(!r.join(c).join("pod/x").exists());
            assert!(r.join(c).join("pod").exists());
        }
        remove(r, Path::new("/pod/x")).unwrap();
        std::fs::write(r.join("memory/pod/busy"), "").unwrap();
        assert!(remove(r, Path::new("/pod")).is_err());
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(cgroupfs_path("/a/b"), PathBuf::from("/a/b"));
        assert_eq!(
            cgroupfs_path("kubepods-besteffort-pod1.slice:crio:abc"),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crio-abc.scope"
            )
        );
        assert_eq!(
            cgroupfs_path("system.slice::x"),
            PathBuf::from("/system.slice/x.scope")
        );
    }
}
