//! systemd's readiness protocol (sd_notify) without libsystemd: datagrams
//! to `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`),
//! `READY=1` once the CRI socket answers, `WATCHDOG=1` every half
//! `$WATCHDOG_USEC`, `STOPPING=1` on a stop.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names, if it is set and usable.
    pub fn from_env() -> Option<Self> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        match Self::open(&name.to_string_lossy()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET {name:?}: {e}: no readiness notification");
                None
            }
        }
    }

    fn open(name: &str) -> std::io::Result<Self> {
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None => SocketAddr::from_pathname(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        // A full receive queue drops a message instead of stalling the daemon.
        socket.set_nonblocking(true)?;
        Ok(Self { socket, addr })
    }

    /// Sends `state` (e.g. `READY=1`); a failure is logged, never fatal.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            tracing::warn!("sd_notify {state}: {e}");
        }
    }

    /// Sends `WATCHDOG=1` every `interval`, forever (run it as a task).
    pub async fn watchdog(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            self.send("WATCHDOG=1");
        }
    }
}

/// Sends `READY=1` once the CRI socket answers (its gRPC server sends its
/// HTTP/2 SETTINGS to a client's preface), then keeps the watchdog fed
/// when it is on.
pub async fn announce_ready(listen: PathBuf, notifier: Arc<Notifier>) {
    let answered = tokio::time::timeout(READY_DEADLINE, http2_answers(&listen)).await;
    match answered {
        Ok(Ok(())) => notifier.send("READY=1"),
        Ok(Err(e)) => return tracing::error!("{} does not answer: {e}", listen.display()),
        Err(_) => {
            return tracing::error!(
                "{} does not answer within {READY_DEADLINE:?}",
                listen.display()
            );
        }
    }
    if let Some(interval) = watchdog_interval() {
        tracing::info!(?interval, "systemd watchdog on");
        notifier.watchdog(interval).await;
    }
}

/// How long the daemon waits for its own socket to answer before it gives
/// up announcing readiness.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends the HTTP/2 client preface and an empty SETTINGS frame to `socket`
/// and reads the first frame of the answer, which must be SETTINGS.
async fn http2_answers(socket: &Path) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // Length 0, type 4 (SETTINGS), no flags, stream 0.
    const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(PREFACE).await?;
    stream.write_all(&EMPTY_SETTINGS).await?;
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await?;
    if header[3] != 4 {
        return Err(std::io::Error::other(format!(
            "the first frame is of type {}, not SETTINGS",
            header[3]
        )));
    }
    Ok(())
}

/// Half of `$WATCHDOG_USEC` when the watchdog is on for this process
/// (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn interval_from(usec: Option<&str>, pid: Option<&str>, own: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != own
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_only_for_us() {
        let half = Some(Duration::from_millis(100));
        assert_eq!(interval_from(Some("200000"), None, 7), half);
        assert_eq!(interval_from(Some("200000"), Some("7"), 7), half);
        assert_eq!(interval_from(Some("200000"), Some("8"), 7), None);
        assert_eq!(interval_from(Some("0"), None, 7), None);
        assert_eq!(interval_from(Some("soon"), None, 7), None);
        assert_eq!(interval_from(None, None, 7), None);
    }

    #[test]
    fn messages_reach_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        Notifier::open(path.to_str().unwrap())
            .unwrap()
            .send("READY=1");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("crio-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::open(&format!("@{name}"))
            .unwrap()
            .send("STOPPING=1");
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
