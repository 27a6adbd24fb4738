//! OOM kills in a container's memory cgroup: watched while it runs (the
//! `oom_kill` count of `memory.oom_control` on v1, of `memory.events` on
//! v2, checked when the v1 eventfd registered on `memory.oom_control` or
//! the v2 inotify watch on `memory.events` fires, and twice a second), and
//! read once more when its init has exited, before the runtime deletes the
//! cgroup. The v2 watch matters under the systemd driver: systemd removes
//! an emptied scope's cgroup as soon as the init is gone, before any read
//! after the exit, so the kill must be seen as it happens.

use std::path::{Path, PathBuf};

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

/// The hierarchical `oom_kill` count of a container's parent cgroup when
/// the container was created: on v2 it grows with every kill below it.
#[derive(Debug, Clone)]
pub struct ParentCount {
    parent: PathBuf,
    count: u64,
}

impl ParentCount {
    /// The count of `cgroup`'s parent now (None on v1, where a container's
    /// own cgroup outlives its processes and is read instead).
    pub fn read(cgroup: &Path) -> Option<Self> {
        let parent = cgroup.parent()?;
        parent.join("memory.events").exists().then(|| Self {
            parent: parent.to_path_buf(),
            count: oom_kills(parent),
        })
    }

    /// Whether the parent's count grew since.
    fn grew(&self) -> bool {
        oom_kills(&self.parent) > self.count
    }
}

/// Whether the container whose memory cgroup is `cgroup` was OOM-killed,
/// decided at its init's exit: its cgroup's own count while the cgroup is
/// there. Under the systemd driver on v2, systemd removes an emptied scope
/// at once, possibly before this read and before a throttled inotify
/// event told the watch: then an init killed by a SIGKILL no kill request
/// sent (`sigkilled`) while the parent's count grew was OOM-killed.
pub fn killed_at_exit(cgroup: &Path, parent: Option<&ParentCount>, sigkilled: bool) -> bool {
    if cgroup.join("memory.events").exists() || cgroup.join("memory.oom_control").exists() {
        return oom_kills(cgroup) > 0;
    }
    sigkilled && parent.is_some_and(ParentCount::grew)
}

/// Sends on `tx` for every OOM kill in `cgroup` until `done` turns true or
/// the cgroup goes.
pub async fn watch(
    cgroup: PathBuf,
    mut done: tokio::sync::watch::Receiver<bool>,
    tx: tokio::sync::mpsc::Sender<()>,
) {
    let v1 = cgroup.join("memory.oom_control").exists();
    let mut events = if v1 {
        register_v1(&cgroup).ok()
    } else {
        register_v2(&cgroup).ok()
    };
    // Read after the watch is set: a kill in between is not missed.
    let mut seen = oom_kills(&cgroup);
    loop {
        // The descriptor wakes at once where the kernel signals it; the
        // count is also checked twice a second (v1 kernels that signal
        // only part of the OOMs, a watch that could not be set up).
        let woke = async {
            let tick = tokio::time::sleep(std::time::Duration::from_millis(500));
            match events.as_mut() {
                Some(fd) => {
                    // Room for a batch of inotify events (an eventfd reads 8).
                    let mut buf = [0u8; 512];
                    tokio::select! {
                        _ = tokio::io::AsyncReadExt::read(fd, &mut buf) => {}
                        _ = tick => {}
                    }
                }
                None => tick.await,
            }
        };
        // A kill signalled with the exit is still counted.
        tokio::select! {
            biased;
            _ = woke => {}
            _ = done.wait_for(|d| *d) => return,
        }
        // The eventfd also fires when the cgroup is removed.
        let events_file = if v1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        if !cgroup.join(events_file).exists() {
            return;
        }
        let now = oom_kills(&cgroup);
        if now > seen {
            seen = now;
            if tx.send(()).await.is_err() {
                return;
            }
        }
    }
}

/// An eventfd the kernel signals on OOM in a v1 memory cgroup (read
/// through tokio's pipe reader, which takes any pollable descriptor).
fn register_v1(cgroup: &Path) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    use std::os::fd::AsRawFd;
    let efd = rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?;
    let control = std::fs::File::open(cgroup.join("memory.oom_control"))?;
    std::fs::write(
        cgroup.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )?;
    tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(efd)
}

/// An inotify descriptor that wakes when a v2 cgroup's `memory.events`
/// changes (the kernel notifies every counter change).
fn register_v2(cgroup: &Path) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    inotify::add_watch(
        &fd,
        cgroup.join("memory.events"),
        inotify::WatchFlags::MODIFY,
    )?;
    tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters() {
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
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_removed_scope_is_judged_by_its_parent_and_the_signal() {
        let tmp = tempfile::tempdir().unwrap();
        let (pod, ctr) = (
            tmp.path().join("pod.slice"),
            tmp.path().join("pod.slice/c.scope"),
        );
        std::fs::create_dir_all(&ctr).unwrap();
        let events = |dir: &Path, kills: u32| {
            std::fs::write(
                dir.join("memory.events"),
                format!("oom 1\noom_kill {kills}\n"),
            )
            .unwrap()
        };
        events(&pod, 2);
        events(&ctr, 0);
        let base = ParentCount::read(&ctr).unwrap();
        // The cgroup is there: its own count decides.
        events(&pod, 3);
        assert!(!killed_at_exit(&ctr, Some(&base), true));
        events(&ctr, 1);
        assert!(killed_at_exit(&ctr, Some(&base), false));
        // Removed by systemd: a SIGKILL nobody asked for while the
        // parent's count grew.
        std::fs::remove_dir_all(&ctr).unwrap();
        assert!(killed_at_exit(&ctr, Some(&base), true));
        assert!(!killed_at_exit(&ctr, Some(&base), false));
        events(&pod, 2);
        assert!(!killed_at_exit(&ctr, Some(&base), true));
        assert!(!killed_at_exit(&ctr, None, true));
    }
}
