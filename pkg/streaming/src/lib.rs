//! The kubelet streaming protocol for crio-rs: the CRI `Exec`, `Attach`
//! and `PortForward` calls answer with a URL on this crate's server, and a
//! client (kubelet proxying the API server, `kubectl`, `crioctl`) upgrades
//! an HTTP connection there.
//!
//! - [`Server`] registers requests under single-use, expiring tokens
//!   ([`tokens`]) and serves `/exec/TOKEN`, `/attach/TOKEN` and
//!   `/portforward/TOKEN`; unknown, used or expired tokens get 404.
//! - Protocols: SPDY/3.1 ([`spdy`], [`kube_spdy`]) with remotecommand
//!   `v4`…`channel.k8s.io` and `portforward.k8s.io`, as kubelet and the API
//!   server speak them; WebSocket with the `channel.k8s.io` family (`v5`,
//!   `v4`, `v4.base64`, `base64`, and the unversioned one) for exec and
//!   attach, and the channel-pair protocol for port-forward ([`ws`]).
//! - [`Backend`] is what the daemon implements: run the exec, join the
//!   attach, connect the port.
//! - [`client`] speaks the same protocol, for `crioctl` and the tests.

pub mod client;
pub mod kube_spdy;
mod server;
pub mod spdy;
pub mod tls;
pub mod tokens;
pub mod ws;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

pub use server::{Server, ServerConfig};

/// How a client talks to the streaming server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// SPDY/3.1, what kubelet and the API server speak.
    #[default]
    Spdy,
    /// WebSocket (`v5.channel.k8s.io` and friends).
    WebSocket,
}

/// What can go wrong registering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token cache is full.
    #[error("too many pending streaming requests (at most {0})")]
    Full(usize),
    /// No randomness for a token.
    #[error("no random token: {0}")]
    Random(String),
}

/// A pending CRI Exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// Container ID.
    pub container_id: String,
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// Run in a terminal.
    pub tty: bool,
    /// Stream stdin.
    pub stdin: bool,
    /// Stream stdout.
    pub stdout: bool,
    /// Stream stderr (not with a terminal).
    pub stderr: bool,
}

/// A pending CRI Attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Container ID.
    pub container_id: String,
    /// Stream stdin.
    pub stdin: bool,
    /// The container has a terminal.
    pub tty: bool,
    /// Stream stdout.
    pub stdout: bool,
    /// Stream stderr.
    pub stderr: bool,
}

/// A pending CRI PortForward.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// The pod whose network namespace the ports are in.
    pub pod_sandbox_id: String,
    /// Ports the client may forward (empty: any).
    pub ports: Vec<i32>,
}

/// A pending request of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Exec.
    Exec(ExecRequest),
    /// Attach.
    Attach(AttachRequest),
    /// PortForward.
    PortForward(PortForwardRequest),
}

impl Request {
    /// The URL path segment of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        }
    }
}

/// A reader the backend takes stdin from.
pub type Input = Box<dyn AsyncRead + Send + Unpin>;
/// A writer the backend puts output into.
pub type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection to forward: bytes both ways.
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

/// The streams of one exec or attach session. Dropping an output closes
/// that stream for the client. `gone` turns true when the client went
/// away: the backend should end the session (kill an exec) then.
pub struct StreamIo {
    /// The client's stdin, if it streams one; end of file when it closes.
    pub stdin: Option<Input>,
    /// Where stdout goes, if the client wants it.
    pub stdout: Option<Output>,
    /// Where stderr goes, if the client wants it.
    pub stderr: Option<Output>,
    /// Terminal sizes (width, height) the client sends.
    pub resize: mpsc::Receiver<(u16, u16)>,
    /// True once the client disconnected.
    pub gone: watch::Receiver<bool>,
}

/// Why the backend could not serve a session: the client sees its message.
/// Boxed so the daemon reports its own error types.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// What the daemon does for each session.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs the exec with `io`; its exit code.
    async fn exec(&self, req: &ExecRequest, io: StreamIo) -> Result<i32, BackendError>;
    /// Joins the container's stdio until it exits or the client leaves.
    async fn attach(&self, req: &AttachRequest, io: StreamIo) -> Result<(), BackendError>;
    /// Connects `conn` with `port` inside the pod's network namespace until
    /// either side closes.
    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        conn: Box<dyn Connection>,
    ) -> Result<(), BackendError>;
}
