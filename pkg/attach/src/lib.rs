//! The attach socket of a crio-rs shim process: any number of clients
//! join a container's (or exec's) socket to see its output and write its
//! stdin.
//!
//! The attach socket speaks frames of `[channel: u8][length: u32 BE][data]`,
//! with the channels of the kubelet's streaming protocol: 0 stdin and 4
//! resize (`width: u16 BE, height: u16 BE`) from the client, 1 stdout and
//! 2 stderr to it, and 3 (the exit code, `i32 BE`) once the process is gone;
//! a client closes stdin with an empty channel-0 frame.
//! A client may also ask for the container's log file to be reopened
//! (channel 5); the reply, on channel 5, goes to every client.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

/// Channel numbers on the attach socket.
pub mod channel {
    /// Client to process.
    pub const STDIN: u8 = 0;
    /// Process to client.
    pub const STDOUT: u8 = 1;
    /// Process to client.
    pub const STDERR: u8 = 2;
    /// The process's exit code, last frame.
    pub const EXIT: u8 = 3;
    /// Terminal size from the client.
    pub const RESIZE: u8 = 4;
    /// From the client: reopen the log file; answered on the same channel
    /// (empty on success, else the error).
    pub const REOPEN_LOG: u8 = 5;
}

/// Largest frame an attach client may send.
pub const MAX_FRAME: usize = 1 << 20;

/// Writes one attach frame.
pub async fn write_frame(
    w: &mut (impl AsyncWrite + Unpin),
    channel: u8,
    data: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(5 + data.len());
    frame.push(channel);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
    frame.extend_from_slice(data);
    w.write_all(&frame).await
}

/// Reads one attach frame (at most 1 MiB of data).
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes is over the limit"),
        ));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    Ok((head[0], data))
}

/// The attach socket of container `id` (or of its exec `exec_id`): in the
/// shim's socket directory, where paths stay short.
pub fn attach_path(dir: &Path, id: &str, exec_id: &str) -> PathBuf {
    let id: String = id.chars().take(32).collect();
    if exec_id.is_empty() {
        dir.join(format!("{id}.attach"))
    } else {
        let exec: String = exec_id.chars().take(32).collect();
        dir.join(format!("{id}-{exec}.attach"))
    }
}

/// Why the log could not be reopened.
#[derive(Debug, thiserror::Error)]
pub enum ReopenError {
    /// The attach socket does not answer.
    #[error("connect to attach socket {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The request could not be sent.
    #[error("ask to reopen the log: {0}")]
    Ask(std::io::Error),
    /// The answer could not be read.
    #[error("read the shim's answer: {0}")]
    Answer(std::io::Error),
    /// The shim could not reopen the file: its message.
    #[error("{0}")]
    Shim(String),
    /// The container exited before the shim answered.
    #[error("the container has exited")]
    Exited,
}

/// Asks the shim serving attach socket `path` to reopen the container's
/// log file; a failure of the shim's carries its message.
pub async fn reopen_log(path: &Path) -> Result<(), ReopenError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|source| ReopenError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    write_frame(&mut stream, channel::REOPEN_LOG, &[])
        .await
        .map_err(ReopenError::Ask)?;
    loop {
        match read_frame(&mut stream).await {
            Ok((channel::REOPEN_LOG, reply)) if reply.is_empty() => return Ok(()),
            Ok((channel::REOPEN_LOG, reply)) => {
                return Err(ReopenError::Shim(
                    String::from_utf8_lossy(&reply).into_owned(),
                ));
            }
            Ok((channel::EXIT, _)) => return Err(ReopenError::Exited),
            Ok(_) => continue,
            Err(e) => return Err(ReopenError::Answer(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_are_bounded() {
        let mut buf = Vec::new();
        write_frame(&mut buf, channel::STDOUT, b"hello")
            .await
            .unwrap();
        write_frame(&mut buf, channel::STDIN, b"").await.unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).await.unwrap(), (1, b"hello".to_vec()));
        assert_eq!(read_frame(&mut r).await.unwrap(), (0, Vec::new()));
        assert!(read_frame(&mut r).await.is_err());
        let mut huge = vec![channel::STDIN];
        huge.extend_from_slice(&(u32::MAX).to_be_bytes());
        let err = read_frame(&mut &huge[..]).await.unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn attach_paths_are_short() {
        let id = "a".repeat(64);
        let p = attach_path(Path::new("/run/crio/shims"), &id, "");
        assert_eq!(
            p,
            PathBuf::from(format!("/run/crio/shims/{}.attach", "a".repeat(32)))
        );
        let e = attach_path(Path::new("/s"), "c1", "e1");
        assert_eq!(e, PathBuf::from("/s/c1-e1.attach"));
    }
}
