//! A process's stdio as the shim owns it. Output (pipes, or a terminal's
//! master) is fanned out to the CRI log file, to the files or FIFOs the
//! create request names (as containerd's `ctr` passes), and to every client
//! of the process's attach socket; stdin comes from a FIFO or from attach
//! clients.
//!
//! The attach socket protocol is `crio_attach`'s. With `stdin_once`, stdin
//! closes when the first attach client leaves.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, broadcast, watch};

use crate::log::LogFile;
use crio_attach::{channel, read_frame, write_frame};
use crio_contract::log::{Stream, Tag};

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The stdio of one container or exec process.
pub struct ProcessIo {
    opts: IoOptions,
    log: Option<Arc<LogFile>>,
    sinks: [Mutex<Option<Sink>>; 2],
    attach: broadcast::Sender<(u8, Arc<[u8]>)>,
    stdin: Mutex<Option<Writer>>,
    attached_once: AtomicBool,
    console: OnceLock<OwnedFd>,
}

/// What to set up for a process.
#[derive(Default)]
pub struct IoOptions {
    /// The CRI log file, if any.
    pub log: Option<Arc<LogFile>>,
    /// Files or FIFOs for stdout and stderr (empty: none).
    pub stdout: String,
    /// See `stdout`.
    pub stderr: String,
    /// A FIFO to read stdin from (empty: none).
    pub stdin_fifo: String,
    /// Whether the process gets stdin from attach clients.
    pub stdin: bool,
    /// Close stdin after the first attach client leaves.
    pub stdin_once: bool,
    /// Most bytes kept of each stream in `stdout` and `stderr` when they
    /// are regular files (a FIFO has a reader and stores nothing); the rest
    /// is read and dropped. None: no limit.
    pub file_max: Option<u64>,
}

/// The descriptors a runtime command hands to a non-terminal process.
pub struct ChildStdio {
    /// Read end of the stdin pipe, if the process has stdin.
    pub stdin: Option<OwnedFd>,
    /// Write end of the stdout pipe.
    pub stdout: OwnedFd,
    /// Write end of the stderr pipe.
    pub stderr: OwnedFd,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// A file or FIFO a process's output stream is copied to.
struct Sink {
    path: String,
    file: tokio::fs::File,
    /// What may still be stored, for a regular file with a limit.
    room: Option<u64>,
    /// Output was dropped (said once).
    full: bool,
}

impl Sink {
    async fn open(path: &str, file_max: Option<u64>) -> std::io::Result<Option<Self>> {
        if path.is_empty() {
            return Ok(None);
        }
        let path = path.strip_prefix("file://").unwrap_or(path);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let meta = file.metadata().await?;
        let room = file_max
            .filter(|_| meta.is_file())
            .map(|max| max.saturating_sub(meta.len()));
        Ok(Some(Self {
            path: path.to_string(),
            file,
            room,
            full: false,
        }))
    }

    /// Stores what fits of `chunk`; past the limit, output is dropped so
    /// the process (whose pipe is still drained) never blocks on it.
    async fn write(&mut self, chunk: &[u8]) {
        let mut keep = chunk.len();
        if let Some(room) = &mut self.room {
            keep = keep.min(usize::try_from(*room).unwrap_or(usize::MAX));
            *room -= keep as u64;
            if keep < chunk.len() && !self.full {
                self.full = true;
                crate::messages::warn(format_args!(
                    "{}: full, the rest of the output is discarded",
                    self.path
                ));
            }
        }
        if keep > 0 {
            let _ = self.file.write_all(&chunk[..keep]).await;
            let _ = self.file.flush().await;
        }
    }
}

impl ProcessIo {
    /// The state of a process: opens the output files the options name.
    pub async fn new(opts: IoOptions) -> std::io::Result<Arc<Self>> {
        let sinks = [
            Mutex::new(Sink::open(&opts.stdout, opts.file_max).await?),
            Mutex::new(Sink::open(&opts.stderr, opts.file_max).await?),
        ];
        Ok(Arc::new(Self {
            log: opts.log.clone(),
            sinks,
            attach: broadcast::channel(64).0,
            stdin: Mutex::new(None),
            console: OnceLock::new(),
            attached_once: AtomicBool::new(false),
            opts,
        }))
    }

    fn wants_stdin(&self) -> bool {
        self.opts.stdin || !self.opts.stdin_fifo.is_empty()
    }

    /// Pipes for a non-terminal process: the child's ends, and the readers
    /// of stdout and stderr to pump.
    pub async fn pipes(self: &Arc<Self>) -> std::io::Result<(ChildStdio, [OwnedFd; 2])> {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let mut child_stdin = None;
        if self.wants_stdin() {
            let (r, w) = pipe()?;
            child_stdin = Some(r);
            let sender = tokio::net::unix::pipe::Sender::from_owned_fd(w)?;
            *self.stdin.lock().await = Some(Box::new(sender));
            self.clone().feed_stdin_fifo().await?;
        }
        let child = ChildStdio {
            stdin: child_stdin,
            stdout: out_w,
            stderr: err_w,
        };
        Ok((child, [out_r, err_r]))
    }

    /// Takes the terminal master of a terminal process; returns the reader
    /// of the terminal's output.
    pub async fn terminal(self: &Arc<Self>, master: OwnedFd) -> std::io::Result<OwnedFd> {
        let reader = master.try_clone()?;
        if self.wants_stdin() {
            let writer = master.try_clone()?;
            set_nonblocking(&writer)?;
            let sender = tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(writer)?;
            *self.stdin.lock().await = Some(Box::new(sender));
            self.clone().feed_stdin_fifo().await?;
        }
        let _ = self.console.set(master);
        Ok(reader)
    }

    async fn feed_stdin_fifo(self: Arc<Self>) -> std::io::Result<()> {
        let fifo = &self.opts.stdin_fifo;
        if fifo.is_empty() {
            return Ok(());
        }
        // Opening blocks until a writer comes, which may be never (ctr
        // passes a stdin FIFO it does not use without -i): open in the
        // background; `finish` unblocks it.
        let fifo = fifo.clone();
        tokio::spawn(async move {
            let Ok(mut source) = tokio::fs::OpenOptions::new().read(true).open(&fifo).await else {
                self.close_stdin().await;
                return;
            };
            let mut buf = vec![0u8; 8192];
            loop {
                match source.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if self.write_stdin(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            self.close_stdin().await;
        });
        Ok(())
    }

    /// Writes to the process's stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        match stdin.as_mut() {
            Some(w) => {
                w.write_all(data).await?;
                w.flush().await
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin is closed",
            )),
        }
    }

    /// Closes the process's stdin (a terminal gets an end-of-file character).
    pub async fn close_stdin(&self) {
        let mut stdin = self.stdin.lock().await;
        if let Some(mut w) = stdin.take()
            && self.console.get().is_some()
        {
            let _ = w.write_all(&[4]).await;
        }
    }

    /// Sets the terminal size; no-op without a terminal.
    pub fn resize(&self, width: u16, height: u16) -> std::io::Result<()> {
        if let Some(master) = self.console.get() {
            let size = rustix::termios::Winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            rustix::termios::tcsetwinsize(master.as_fd(), size)?;
        }
        Ok(())
    }

    /// Opens the log file again at its path (after rotation).
    pub async fn reopen_log(&self) -> std::io::Result<()> {
        match &self.log {
            Some(log) => log.reopen().await,
            None => Ok(()),
        }
    }

    /// Copies one output stream (`channel` 1 or 2) to every destination
    /// until end of file.
    pub async fn pump(self: Arc<Self>, output: OwnedFd, channel: u8) {
        let Ok(mut reader) = reader(output) else {
            return;
        };
        let stream = if channel == channel::STDERR {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            // A terminal's master reports EIO once the last slave is closed.
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let _ = self.attach.send((channel, Arc::from(chunk)));
            if let Some(sink) = self.sinks[usize::from(channel - 1)].lock().await.as_mut() {
                sink.write(chunk).await;
            }
            if let Some(log) = &self.log {
                pending.extend_from_slice(chunk);
                log.write_lines(stream, &mut pending).await;
            }
        }
        if let Some(log) = &self.log
            && !pending.is_empty()
        {
            log.write_line(stream, Tag::Partial, &pending).await;
        }
    }

    /// Tells attach clients the exit code and drops the output sinks (so a
    /// FIFO reader sees end of file).
    pub async fn finish(&self, code: i32) {
        let _ = self
            .attach
            .send((channel::EXIT, Arc::from(&code.to_be_bytes()[..])));
        for sink in &self.sinks {
            sink.lock().await.take();
        }
        if !self.opts.stdin_fifo.is_empty() {
            // A stdin FIFO nobody opened: a writer that comes and goes lets
            // the background open finish and see end of file.
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&self.opts.stdin_fifo);
        }
    }

    /// Serves the attach socket at `path` until `exited` says the process
    /// is gone; removes the socket file then.
    pub async fn serve_attach(
        self: Arc<Self>,
        path: PathBuf,
        mut exited: watch::Receiver<Option<(u32, i64)>>,
    ) -> std::io::Result<()> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(self.clone().client(stream));
                        }
                    }
                    _ = exited.wait_for(Option::is_some) => break,
                }
            }
            let _ = std::fs::remove_file(&path);
        });
        Ok(())
    }

    async fn client(self: Arc<Self>, stream: UnixStream) {
        let mut output = self.attach.subscribe();
        let (mut rd, mut wr) = stream.into_split();
        let forward = async move {
            loop {
                match output.recv().await {
                    Ok((ch, data)) => {
                        if write_frame(&mut wr, ch, &data).await.is_err() || ch == channel::EXIT {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        };
        let replies = self.attach.clone();
        let input = async {
            while let Ok((ch, data)) = read_frame(&mut rd).await {
                match ch {
                    channel::STDIN if data.is_empty() => self.close_stdin().await,
                    channel::STDIN => {
                        let _ = self.write_stdin(&data).await;
                    }
                    channel::RESIZE if data.len() == 4 => {
                        let width = u16::from_be_bytes([data[0], data[1]]);
                        let height = u16::from_be_bytes([data[2], data[3]]);
                        let _ = self.resize(width, height);
                    }
                    channel::REOPEN_LOG => {
                        let reply = match self.reopen_log().await {
                            Ok(()) => String::new(),
                            Err(e) => e.to_string(),
                        };
                        let _ = replies.send((channel::REOPEN_LOG, Arc::from(reply.as_bytes())));
                    }
                    _ => {}
                }
            }
        };
        tokio::select! {
            _ = forward => {}
            _ = input => {}
        }
        if self.opts.stdin_once && !self.attached_once.swap(true, Ordering::SeqCst) {
            self.close_stdin().await;
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// An async reader over a pipe or a terminal master.
fn reader(fd: OwnedFd) -> std::io::Result<impl AsyncRead + Unpin> {
    set_nonblocking(&fd)?;
    tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// Receives the terminal master a runtime sends on its console socket.
pub async fn receive_console(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    let (stream, _) = listener.accept().await?;
    loop {
        stream.readable().await?;
        let got = stream.try_io(tokio::io::Interest::READABLE, || {
            let mut space =
                [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let mut name = [0u8; 4096];
            let mut iov = [std::io::IoSliceMut::new(&mut name)];
            rustix::net::recvmsg(
                &stream,
                &mut iov,
                &mut control,
                rustix::net::RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let fd = control.drain().find_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            });
            Ok(fd)
        });
        match got {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the runtime sent no terminal on the console socket",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    #[tokio::test]
    async fn a_file_sink_keeps_at_most_its_limit_and_a_fifo_has_none() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("out");
        let mut sink = Sink::open(&file.display().to_string(), Some(10))
            .await
            .unwrap()
            .unwrap();
        for chunk in [&b"abcd"[..], b"efgh", b"ijkl", b"mnop"] {
            sink.write(chunk).await;
        }
        let stored = std::fs::read(&file).unwrap();
        // A FIFO streams to its reader: nothing is stored, nothing capped.
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let fifo_sink = Sink::open(&format!("file://{}", fifo.display()), Some(10))
            .await
            .unwrap()
            .unwrap();
        drop(reader);
        assert_eq!(stored, b"abcdefghij");
        assert!(sink.room == Some(0) && sink.full);
        assert_eq!(fifo_sink.room, None);
    }
}
