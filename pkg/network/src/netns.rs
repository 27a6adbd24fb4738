//! Pod namespaces: created by a short-lived single-threaded helper process
//! (`unshare`, then hostname and sysctls set inside), and pinned by bind
//! mounting them onto files under `namespaces_dir`, so they outlive the
//! helper and are found again after a daemon restart. The daemon's own
//! threads never change namespace.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// A namespace kind a pod gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Network.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
}

impl Kind {
    /// The subdirectory of `namespaces_dir` holding this kind (CRI-O's names).
    pub fn dir_name(self) -> &'static str {
        match self {
            Kind::Net => "netns",
            Kind::Ipc => "ipcns",
            Kind::Uts => "utsns",
        }
    }

    /// `net`, `ipc` or `uts`: the name under /proc/PID/ns.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    /// Parses `net`, `ipc` or `uts`.
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "net" => Some(Kind::Net),
            "ipc" => Some(Kind::Ipc),
            "uts" => Some(Kind::Uts),
            _ => None,
        }
    }
}

/// Where namespace `kind` of pod `id` is pinned.
pub fn pin_path(namespaces_dir: &Path, kind: Kind, id: &str) -> PathBuf {
    namespaces_dir.join(kind.dir_name()).join(id)
}

/// What the helper does: new namespaces of `kinds`, set up, then pinned.
#[derive(Debug, Clone, Default)]
pub struct PinRequest {
    /// The namespaces to create.
    pub kinds: Vec<Kind>,
    /// Where to pin them.
    pub namespaces_dir: PathBuf,
    /// The pod's ID (the pin files' name).
    pub id: String,
    /// Hostname set in a new UTS namespace.
    pub hostname: Option<String>,
    /// Namespaced sysctls, `key=value`, applied inside.
    pub sysctls: Vec<(String, String)>,
}

/// Why pinning failed; each names the step.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct PinError {
    step: String,
    source: io::Error,
}

fn step<E: Into<io::Error>>(step: impl Into<String>) -> impl FnOnce(E) -> PinError {
    let step = step.into();
    move |e| PinError {
        step,
        source: e.into(),
    }
}

/// Runs in the helper process (single-threaded, so `unshare` applies to the
/// whole process): creates, configures and pins the namespaces. On failure
/// whatever was pinned is undone.
pub fn pin_in_helper(req: &PinRequest) -> Result<(), PinError> {
    let mut flags = CloneFlags::empty();
    for k in &req.kinds {
        flags |= k.flag();
    }
    unshare(flags).map_err(step("unshare"))?;
    let result = configure_and_pin(req);
    if result.is_err() {
        unpin(&req.namespaces_dir, &req.id, &req.kinds);
    }
    result
}

fn configure_and_pin(req: &PinRequest) -> Result<(), PinError> {
    if req.kinds.contains(&Kind::Uts)
        && let Some(h) = &req.hostname
    {
        nix::unistd::sethostname(h).map_err(step(format!("set hostname {h:?}")))?;
    }
    if req.kinds.contains(&Kind::Net) {
        let status = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .map_err(step("run ip link set lo up"))?;
        if !status.success() {
            return Err(PinError {
                step: "ip link set lo up".into(),
                source: io::Error::other(format!("exit status {status}")),
            });
        }
    }
    for (key, value) in &req.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(step(format!("sysctl {key}={value}")))?;
    }
    for kind in &req.kinds {
        let target = pin_path(&req.namespaces_dir, *kind, &req.id);
        let dir = target.parent().unwrap_or(&req.namespaces_dir);
        std::fs::create_dir_all(dir).map_err(step(format!("create {}", dir.display())))?;
        std::fs::File::create(&target).map_err(step(format!("create {}", target.display())))?;
        let source = format!("/proc/self/ns/{}", kind.name());
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(step(format!("pin {source} at {}", target.display())))?;
    }
    Ok(())
}

/// Unmounts and removes the pins of `kinds` for pod `id`; missing ones are
/// fine. Returns the first failure to remove, if any.
pub fn unpin(namespaces_dir: &Path, id: &str, kinds: &[Kind]) -> Option<PinError> {
    let mut first = None;
    for kind in kinds {
        let target = pin_path(namespaces_dir, *kind, id);
        match umount2(&target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                first.get_or_insert(step(format!("unmount {}", target.display()))(e));
            }
        }
        match std::fs::remove_file(&target) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                first.get_or_insert(step(format!("remove {}", target.display()))(e));
            }
            _ => {}
        }
    }
    first
}

/// Sysctls a pod may set: those isolated by its own namespaces.
pub fn namespaced_sysctl(key: &str, kinds: &[Kind]) -> bool {
    let ipc = matches!(
        key,
        "kernel.shmmax"
            | "kernel.shmall"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
            | "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
    ) || key.starts_with("fs.mqueue.");
    let net = key.starts_with("net.");
    let uts = matches!(key, "kernel.hostname" | "kernel.domainname");
    (ipc && kinds.contains(&Kind::Ipc))
        || (net && kinds.contains(&Kind::Net))
        || (uts && kinds.contains(&Kind::Uts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_kinds() {
        assert_eq!(
            pin_path(Path::new("/var/run"), Kind::Net, "abc"),
            Path::new("/var/run/netns/abc")
        );
        assert_eq!(Kind::parse("ipc"), Some(Kind::Ipc));
        assert_eq!(Kind::parse("pid"), None);
    }

    #[test]
    fn which_sysctls_are_namespaced() {
        let all = [Kind::Net, Kind::Ipc, Kind::Uts];
        assert!(namespaced_sysctl(
            "net.ipv4.ip_unprivileged_port_start",
            &all
        ));
        assert!(namespaced_sysctl("kernel.shm_rmid_forced", &all));
        assert!(namespaced_sysctl("fs.mqueue.msg_max", &all));
        assert!(!namespaced_sysctl("kernel.panic", &all));
        assert!(!namespaced_sysctl("vm.swappiness", &all));
        assert!(!namespaced_sysctl("net.ipv4.ip_forward", &[Kind::Ipc]));
    }

    #[test]
    fn unpin_of_nothing_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(unpin(tmp.path(), "none", &[Kind::Net, Kind::Ipc]).is_none());
    }
}
