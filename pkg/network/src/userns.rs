//! User namespaces for pods. A user namespace cannot be entered by a
//! thread of a multi-threaded process (the daemon), so it is made by a
//! short-lived child cloned into it, together with the namespaces it must
//! own (network, IPC, UTS: a container root can mount sysfs and mqueue only
//! in namespaces its user namespace owns). The caller writes the child's ID
//! maps, pins or enters its namespaces through `/proc/PID/ns`, then lets it
//! exit.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::libc;
use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// One ID mapping: `length` IDs from `container_id` inside are `host_id`
/// and on, outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First ID inside the namespace.
    pub container_id: u32,
    /// First ID on the host.
    pub host_id: u32,
    /// How many IDs.
    pub length: u32,
}

impl IdMap {
    /// The line of `/proc/PID/uid_map` (and `gid_map`).
    pub fn line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }
}

/// Stack of the child: it only blocks in `read` and exits.
const STACK: usize = 64 * 1024;

/// A child process living in a new user namespace (and the namespaces
/// `flags` add, owned by it) until dropped.
pub struct Holder {
    pid: Pid,
    /// Closing it (on drop) lets the child exit.
    release: Option<OwnedFd>,
}

impl Holder {
    /// Clones a child into a new user namespace mapped by `map` (both UIDs
    /// and GIDs) and new namespaces of `flags`.
    pub fn spawn(map: IdMap, flags: CloneFlags) -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (read_fd, write_fd) = (read.as_raw_fd(), write.as_raw_fd());
        let mut stack = vec![0u8; STACK];
        // The child only closes its copy of the write end and blocks in
        // read(2) until the parent closes its own: both async-signal-safe,
        // no allocation, so cloning from a multi-threaded process is sound.
        let child = Box::new(move || {
            let mut byte = 0u8;
            // SAFETY: raw syscalls on descriptors the child owns a copy of.
            unsafe {
                libc::close(write_fd);
                while libc::read(read_fd, (&raw mut byte).cast(), 1) > 0 {}
            }
            0
        });
        // SAFETY: the callback runs on `stack` (64 KiB, far more than it
        // uses) in a copy of this address space and does only the above.
        let pid = unsafe {
            nix::sched::clone(
                child,
                &mut stack,
                CloneFlags::CLONE_NEWUSER | flags,
                Some(libc::SIGCHLD),
            )
        }?;
        drop(read);
        let holder = Holder {
            pid,
            release: Some(write),
        };
        for file in ["uid_map", "gid_map"] {
            std::fs::write(holder.proc_path(file), map.line())?;
        }
        Ok(holder)
    }

    fn proc_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    /// `/proc/PID/ns/NAME` of the child (`user`, `net`, `ipc`, `uts`).
    pub fn ns_path(&self, name: &str) -> PathBuf {
        self.proc_path(&format!("ns/{name}"))
    }

    /// An open descriptor of the child's user namespace (it keeps the
    /// namespace alive after the child is gone).
    pub fn user_ns(&self) -> io::Result<OwnedFd> {
        Ok(File::open(self.ns_path("user"))?.into())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.release.take());
        let _ = waitpid(self.pid, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines() {
        let map = IdMap {
            container_id: 0,
            host_id: 100000,
            length: 65536,
        };
        assert_eq!(map.line(), "0 100000 65536\n");
    }
}
