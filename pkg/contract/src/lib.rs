//! The contract between the daemon, its per-pod shims and crioctl: the
//! annotation keys a bundle's config.json carries to the shim, the files a
//! shim leaves in a bundle or pod directory and their formats, the
//! environment a shim is started with, the CRI log line (`log`) and its
//! RFC 3339 times (`time`), and shared limits. Each literal of that contract
//! is spelled here and nowhere else. std only: the shim, whose size counts,
//! links it.
#![deny(unsafe_code)]

pub mod log;
pub mod time;
pub mod trace;

/// Annotations of a container's config.json that the shim reads.
pub mod annotations {
    /// The CRI log path, as CRI-O names it.
    pub const LOG_PATH: &str = "io.kubernetes.cri-o.LogPath";
    /// The pod's log directory, below which the log path is resolved
    /// without following symlinks.
    pub const LOG_DIRECTORY: &str = "io.crio-rs.LogDirectory";
    /// `log_size_max` in bytes: the shim keeps the CRI log file at or under
    /// it; absent or negative, no limit. CRI-O passes it to conmon as
    /// `--log-size-max` and has no annotation for it.
    pub const LOG_SIZE_MAX: &str = "io.crio-rs.LogSizeMax";
    /// The container keeps stdin open (CRI `stdin`).
    pub const STDIN: &str = "io.kubernetes.cri-o.Stdin";
    /// CRI `stdin_once`.
    pub const STDIN_ONCE: &str = "io.kubernetes.cri-o.StdinOnce";
    /// CRI `tty`.
    pub const TTY: &str = "io.kubernetes.cri-o.TTY";
}

/// Environment variables the daemon starts a shim with.
pub mod env {
    /// The OCI runtime binary.
    pub const RUNTIME: &str = "CRIO_RUNTIME";
    /// The OCI runtime's state root.
    pub const RUNTIME_ROOT: &str = "CRIO_RUNTIME_ROOT";
    /// "1" when cgroups are systemd slices.
    pub const SYSTEMD_CGROUP: &str = "CRIO_SYSTEMD_CGROUP";
    /// The cgroup (cgroupfs path) the shim server moves into.
    pub const SHIM_CGROUP: &str = "CRIO_SHIM_CGROUP";
    /// Where the shim puts its sockets.
    pub const SHIM_SOCKET_DIR: &str = "CRIO_SHIM_SOCKET_DIR";
    /// The format of the shim's own log (its stderr, the pod's
    /// `shim.log`): "text" or "json", as the daemon's.
    pub const LOG_FORMAT: &str = "CRIO_LOG_FORMAT";
}

/// Files of a container's bundle directory written by the shim.
pub mod bundle {
    /// Records the exit of the container's init: [`exit_record`].
    pub const EXIT_FILE: &str = "exit";
    /// Present when the container was OOM-killed.
    pub const OOM_FILE: &str = "oom";

    /// The content of the exit file: `CODE NANOS` (exit code, and when,
    /// in nanoseconds since the epoch).
    pub fn exit_record(code: u32, at_nanos: i64) -> String {
        format!("{code} {at_nanos}\n")
    }

    /// The exit code and time of an exit file's content.
    pub fn parse_exit_record(text: &str) -> Option<(i32, i64)> {
        let mut parts = text.split_whitespace();
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }
}

/// Files of a pod's directory.
pub mod pod {
    /// The shim's ttrpc address, written by the daemon before the shim
    /// starts.
    pub const SHIM_ADDRESS_FILE: &str = "shim.address";
    /// The address the shim's own `start` action writes (as containerd's
    /// shims do, in their working directory).
    pub const START_ADDRESS_FILE: &str = "address";
}

/// ExecSync output kept per stream: the shim stores at most this much of an
/// exec's stdout, and of its stderr, in the regular files the exec request
/// names (they live on the runtime state tmpfs) and discards the rest; the
/// daemon reads no more. 16 MiB, the kubelet's and CRI-O's cap
/// (`maxExecSyncSize`).
pub const EXEC_SYNC_OUTPUT_MAX: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::bundle::*;

    #[test]
    fn exit_records_read_back() {
        assert_eq!(parse_exit_record(&exit_record(137, 42)), Some((137, 42)));
        assert_eq!(parse_exit_record("3"), None);
        assert_eq!(parse_exit_record("x 1"), None);
        assert_eq!(parse_exit_record(""), None);
    }
}
