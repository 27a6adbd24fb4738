//! The daemon's side of `kubectl exec/attach/port-forward`: the streaming
//! server's backend. Exec and attach go through the pod's shim (a task
//! exec, and the attach sockets the shim serves); a forwarded port is
//! reached by a helper (`crio port-forward`, this binary in a fresh
//! process) that enters the pod's network namespace, so no daemon thread
//! ever changes namespace.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crio_attach::{channel, read_frame, write_frame};
use crio_streaming::{AttachRequest, Backend, BackendError, Connection, ExecRequest, StreamIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::container::ExecOptions;
use crate::cri::State;

/// Why a streaming session failed; the streaming server shows the text.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    /// The daemon's state is gone.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// The attach socket did not accept.
    #[error("attach socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    /// The container is not running.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The pod is unknown.
    #[error("pod sandbox {0} not found")]
    NoPod(String),
    /// The client left mid-exec.
    #[error("the client went away; the exec was killed")]
    ClientGone,
    /// A daemon call failed.
    #[error("{0}")]
    Daemon(#[from] crate::error::Error),
    /// The port-forward helper failed.
    #[error("{0}")]
    Helper(String),
}

/// The streaming backend over the daemon's state.
pub struct StreamBackend {
    state: Weak<State>,
}

impl StreamBackend {
    /// A backend reaching `state` (weakly: the state owns the server).
    pub fn new(state: Weak<State>) -> Arc<Self> {
        Arc::new(Self { state })
    }

    fn state(&self) -> Result<Arc<State>, StreamError> {
        self.state.upgrade().ok_or(StreamError::ShuttingDown)
    }

    async fn exec_session(&self, req: &ExecRequest, io: StreamIo) -> Result<i32, StreamError> {
        let st = self.state()?;
        let options = ExecOptions {
            cmd: req.cmd.clone(),
            tty: req.tty,
            stdin: if req.stdin { "attach" } else { "" }.to_string(),
            files: (String::new(), String::new()),
        };
        let exec = st
            .containers
            .exec_create(&req.container_id, options)
            .await?;
        let socket = st.containers.attach_socket(exec.container_id(), &exec.id);
        let outcome = async {
            let conn = connect(&socket).await?;
            exec.start().await?;
            Ok::<_, StreamError>(relay(conn, io, true).await)
        }
        .await;
        let result = match outcome {
            Ok(Some(code)) => Ok(code),
            // The client left: nothing may stay behind.
            Ok(None) => {
                exec.kill().await;
                Err(StreamError::ClientGone)
            }
            Err(e) => Err(e),
        };
        exec.delete().await;
        result
    }

    async fn attach_session(&self, req: &AttachRequest, io: StreamIo) -> Result<(), StreamError> {
        let st = self.state()?;
        let r = st.containers.observe(&req.container_id)?;
        if r.state != crate::container::ContainerState::Running {
            return Err(StreamError::NotRunning(r.id.to_string()));
        }
        let conn = connect(&st.containers.attach_socket(&r.id, "")).await?;
        relay(conn, io, r.config.stdin_once).await;
        Ok(())
    }

    /// Copies between `conn` and `port` in the pod's network namespace,
    /// through the helper process.
    async fn port_forward_session(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        mut conn: Box<dyn Connection>,
    ) -> Result<(), StreamError> {
        let st = self.state()?;
        let pod = st
            .pods
            .get(pod_sandbox_id)
            .ok_or_else(|| StreamError::NoPod(pod_sandbox_id.to_string()))?;
        let netns = pod
            .kinds()
            .contains(&crio_network::netns::Kind::Net)
            .then(|| {
                crio_network::netns::pin_path(
                    &st.pods.namespaces_dir(),
                    crio_network::netns::Kind::Net,
                    &pod.id,
                )
            });
        let helper = |e: std::io::Error| StreamError::Helper(e.to_string());
        let exe = std::env::current_exe().map_err(helper)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("port-forward").arg("--port").arg(port.to_string());
        if let Some(ns) = &netns {
            cmd.arg("--netns").arg(ns);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| StreamError::Helper(format!("start the port-forward helper: {e}")))?;
        let (Some(mut to_port), Some(mut from_port), Some(mut errors)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(StreamError::Helper(
                "port-forward helper without pipes".into(),
            ));
        };
        let (mut from_client, mut to_client) = tokio::io::split(&mut conn);
        let up = async {
            let _ = tokio::io::copy(&mut from_client, &mut to_port).await;
            drop(to_port);
        };
        let down = async {
            let _ = tokio::io::copy(&mut from_port, &mut to_client).await;
            let _ = to_client.shutdown().await;
        };
        // The session ends when everything the port sent has reached the
        // client (the helper's stdout ends when the socket closes); the
        // client's end of data alone only closes the way in.
        tokio::select! {
            _ = down => {}
            _ = async { up.await; std::future::pending::<()>().await } => {}
        }
        let status = child.wait().await.map_err(helper)?;
        let mut message = String::new();
        let _ = errors.read_to_string(&mut message).await;
        if status.success() {
            Ok(())
        } else {
            Err(StreamError::Helper(message.trim().to_string()))
        }
    }
}

/// Connects to an attach socket, retrying briefly while the shim sets it up.
async fn connect(path: &Path) -> Result<UnixStream, StreamError> {
    let mut last = None;
    for _ in 0..50 {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(StreamError::Connect {
        path: path.display().to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("no attempt")),
    })
}

/// Relays between a client's streams and a shim attach socket until the
/// process exits (its exit code) or the client goes (None). `close_stdin`:
/// tell the shim when the client's stdin ends.
async fn relay(socket: UnixStream, io: StreamIo, close_stdin: bool) -> Option<i32> {
    let StreamIo {
        stdin,
        mut stdout,
        mut stderr,
        mut resize,
        mut gone,
    } = io;
    let (mut rd, wr) = socket.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let mut senders = Vec::new();
    if let Some(mut input) = stdin {
        let wr = wr.clone();
        senders.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if write_frame(&mut *wr.lock().await, channel::STDIN, &buf[..n])
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            if close_stdin {
                let _ = write_frame(&mut *wr.lock().await, channel::STDIN, &[]).await;
            }
        }));
    }
    {
        let wr = wr.clone();
        senders.push(tokio::spawn(async move {
            while let Some((w, h)) = resize.recv().await {
                let mut size = w.to_be_bytes().to_vec();
                size.extend_from_slice(&h.to_be_bytes());
                if write_frame(&mut *wr.lock().await, channel::RESIZE, &size)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    let output = async {
        loop {
            let Ok((ch, data)) = read_frame(&mut rd).await else {
                return None;
            };
            let sink = match ch {
                channel::STDOUT => stdout.as_mut(),
                channel::STDERR => stderr.as_mut(),
                channel::EXIT if data.len() == 4 => {
                    return Some(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                }
                _ => None,
            };
            if let Some(s) = sink
                && (s.write_all(&data).await.is_err() || s.flush().await.is_err())
            {
                return None;
            }
        }
    };
    let result = tokio::select! {
        code = output => code,
        _ = gone.wait_for(|g| *g) => None,
    };
    for s in senders {
        s.abort();
    }
    result
}

#[async_trait::async_trait]
impl Backend for StreamBackend {
    async fn exec(&self, req: &ExecRequest, io: StreamIo) -> Result<i32, BackendError> {
        Ok(self.exec_session(req, io).await?)
    }

    async fn attach(&self, req: &AttachRequest, io: StreamIo) -> Result<(), BackendError> {
        Ok(self.attach_session(req, io).await?)
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        conn: Box<dyn Connection>,
    ) -> Result<(), BackendError> {
        Ok(self
            .port_forward_session(pod_sandbox_id, port, conn)
            .await?)
    }
}

/// Entry point of `crio port-forward`: enters the network namespace at
/// `netns` (if any), connects to `port` on the loopback, and copies stdin
/// to the connection and the connection to stdout.
pub fn helper_main(netns: Option<&PathBuf>, port: u16) -> ExitCode {
    if let Some(ns) = netns {
        let entered = std::fs::File::open(ns).and_then(|f| {
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
        if let Err(e) = entered {
            eprintln!("enter network namespace {}: {e}", ns.display());
            return ExitCode::FAILURE;
        }
    }
    let conn =
        TcpStream::connect(("127.0.0.1", port)).or_else(|_| TcpStream::connect(("::1", port)));
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connect to port {port} in the pod: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(mut writer) = conn.try_clone() else {
        return ExitCode::FAILURE;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut writer);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let mut reader = conn;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    ExitCode::SUCCESS
}
