//! Pod namespaces: created on a short-lived thread of their own (`unshare`
//! there, then hostname, loopback and sysctls set inside; network, IPC and
//! UTS namespaces belong to a thread, not to the process), and pinned by
//! bind mounting them onto files under `namespaces_dir`, so they outlive
//! that thread and are found again after a daemon restart. No other thread
//! of the caller ever changes namespace.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::userns::{Holder, IdMap};

/// A namespace kind a pod gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Network.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname.
    Uts,
    /// User and group IDs: made with the others, which it then owns (see
    /// [`crate::userns`]).
    User,
}

impl Kind {
    /// The subdirectory of `namespaces_dir` holding this kind (CRI-O's names).
    pub fn dir_name(self) -> &'static str {
        match self {
            Kind::Net => "netns",
            Kind::Ipc => "ipcns",
            Kind::Uts => "utsns",
            Kind::User => "userns",
        }
    }

    /// `net`, `ipc`, `uts` or `user`: the name under /proc/PID/ns.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
            Kind::User => "user",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
            Kind::User => CloneFlags::CLONE_NEWUSER,
        }
    }

    /// Parses `net`, `ipc`, `uts` or `user`.
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "net" => Some(Kind::Net),
            "ipc" => Some(Kind::Ipc),
            "uts" => Some(Kind::Uts),
            "user" => Some(Kind::User),
            _ => None,
        }
    }
}

/// Where namespace `kind` of pod `id` is pinned.
pub fn pin_path(namespaces_dir: &Path, kind: Kind, id: &str) -> PathBuf {
    namespaces_dir.join(kind.dir_name()).join(id)
}

/// What [`pin`] does: new namespaces of `kinds`, set up, then pinned.
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
    /// The ID map of the user namespace, when `kinds` has [`Kind::User`].
    pub user: Option<IdMap>,
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

/// Creates, sets up and pins the namespaces `req` asks for, on a thread
/// that exits afterwards (it blocks the caller meanwhile). On failure
/// whatever was pinned is undone.
pub fn pin(req: &PinRequest) -> Result<(), PinError> {
    let req = req.clone();
    let thread = std::thread::Builder::new()
        .name("pin-namespaces".into())
        .spawn(move || {
            let mut flags = CloneFlags::empty();
            for k in req.kinds.iter().filter(|k| **k != Kind::User) {
                flags |= k.flag();
            }
            let holder = match (req.kinds.contains(&Kind::User), req.user) {
                (false, _) => {
                    unshare(flags).map_err(step("unshare"))?;
                    None
                }
                (true, Some(map)) => Some(enter_owned(map, flags, &req.kinds)?),
                (true, None) => {
                    return Err(PinError {
                        step: "user namespace".into(),
                        source: io::Error::other("no ID map"),
                    });
                }
            };
            let result = configure_and_pin(&req, holder.as_ref());
            if result.is_err() {
                unpin(&req.namespaces_dir, &req.id, &req.kinds);
            }
            result
        })
        .map_err(step("start the namespace thread"))?;
    thread.join().unwrap_or_else(|_| {
        Err(PinError {
            step: "namespace thread".into(),
            source: io::Error::other("panicked"),
        })
    })
}

/// Sets the loopback interface of the calling thread's network namespace
/// up, by rtnetlink (RTM_NEWLINK on ifindex 1, which is `lo` in every
/// network namespace) rather than a process.
fn loopback_up() -> Result<(), PinError> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(step("open rtnetlink"))?;
    // nlmsghdr (len, type, flags, seq, pid) then ifinfomsg (family, pad,
    // type, index, flags, change).
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg.extend_from_slice(&1i32.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    sendto(fd, &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty()).map_err(step("set lo up"))?;
    let mut ack = [0u8; 64];
    let n = recv(fd, &mut ack, MsgFlags::empty()).map_err(step("set lo up"))?;
    let kind = (n >= 20).then(|| u16::from_ne_bytes([ack[4], ack[5]]));
    if kind != Some(NLMSG_ERROR) {
        return Err(PinError {
            step: "set lo up".into(),
            source: io::Error::other("no acknowledgement from the kernel"),
        });
    }
    match i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]) {
        0 => Ok(()),
        e => Err(PinError {
            step: "set lo up".into(),
            source: io::Error::from_raw_os_error(-e),
        }),
    }
}

/// A new user namespace mapped by `map` owning new namespaces of `flags`,
/// which the calling thread enters (a thread may enter these, not a user
/// namespace).
fn enter_owned(map: IdMap, flags: CloneFlags, kinds: &[Kind]) -> Result<Holder, PinError> {
    let holder = Holder::spawn(map, flags).map_err(step("create the user namespace"))?;
    for kind in kinds.iter().filter(|k| **k != Kind::User) {
        let path = holder.ns_path(kind.name());
        let ns = std::fs::File::open(&path).map_err(step(format!("open {}", path.display())))?;
        setns(ns, kind.flag()).map_err(step(format!("enter {}", path.display())))?;
    }
    Ok(holder)
}

fn configure_and_pin(req: &PinRequest, holder: Option<&Holder>) -> Result<(), PinError> {
    if req.kinds.contains(&Kind::Uts)
        && let Some(h) = &req.hostname
    {
        nix::unistd::sethostname(h).map_err(step(format!("set hostname {h:?}")))?;
    }
    if req.kinds.contains(&Kind::Net) {
        loopback_up()?;
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
        let source = match (kind, holder) {
            (Kind::User, Some(h)) => h.ns_path("user").display().to_string(),
            _ => format!("/proc/thread-self/ns/{}", kind.name()),
        };
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
