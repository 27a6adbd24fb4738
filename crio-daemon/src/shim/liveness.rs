//! Whether a pod's shim still exists, told without asking it anything: a
//! shim that died leaves a socket that refuses connections, while a stopped
//! or busy one still accepts them (the kernel queues them) and only does
//! not answer.

use std::os::fd::AsRawFd as _;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

/// Whether a shim listens on `address` (`unix:///path`): a connection
/// made without blocking is accepted or queued (a full queue counts: some
/// process holds the socket). A missing socket or a refusal means no shim.
pub fn accepts(address: &str) -> bool {
    let Some(path) = address.trim().strip_prefix("unix://") else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    let Ok(fd) = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        // Cannot tell: not evidence of a death.
        return true;
    };
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS) => true,
        Err(Errno::ECONNREFUSED | Errno::ENOENT | Errno::ENOTSOCK) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_accepts_a_closed_one_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shim.sock");
        let address = format!("unix://{}", path.display());
        assert!(!accepts(&address), "no socket");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Never accepted, as by a stopped shim: still accepts.
        assert!(accepts(&address));
        drop(listener);
        assert!(path.exists());
        assert!(!accepts(&address), "the socket file of a dead listener");
        assert!(!accepts("tcp://1.2.3.4:5"));
    }
}
