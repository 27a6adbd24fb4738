//! The WebSocket side of the kubelet streaming protocol.
//!
//! Exec and attach (`channel.k8s.io` family): every message starts with a
//! channel number — 0 stdin, 1 stdout, 2 stderr, 3 error (v4 and v5: a
//! JSON `Status` carrying the exit code), 4 resize (`{"Width":W,"Height":H}`),
//! and in v5 255 to close a channel (its data: the channel number). The
//! base64 variants send text messages: the channel as an ASCII digit, then
//! the data in base64.
//!
//! Port-forward: for the i-th port, channel 2i carries data and 2i+1
//! errors; the first message on each starts with the port, 2 bytes little
//! endian.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::ClientError;
use crate::{AttachRequest, Backend, ExecRequest, StreamIo};

/// Channel numbers.
pub mod channel {
    /// Client to process.
    pub const STDIN: u8 = 0;
    /// Process to client.
    pub const STDOUT: u8 = 1;
    /// Process to client.
    pub const STDERR: u8 = 2;
    /// Errors and (v4, v5) the exit status.
    pub const ERROR: u8 = 3;
    /// Terminal size from the client.
    pub const RESIZE: u8 = 4;
    /// v5: close the channel named by the data.
    pub const CLOSE: u8 = 255;
}

/// The remotecommand subprotocols, preferred first.
pub const EXEC_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "base64.channel.k8s.io",
    "channel.k8s.io",
];

/// The port-forward subprotocols, preferred first.
pub const PORT_FORWARD_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "portforward.k8s.io"];

/// A negotiated remotecommand protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// Data as base64 text messages.
    pub base64: bool,
    /// The error channel carries a JSON Status (v4 and later).
    pub status: bool,
    /// The client may close channels (v5).
    pub close: bool,
}

impl Protocol {
    /// The protocol of subprotocol `name`.
    pub fn of(name: &str) -> Self {
        Self {
            base64: name.contains("base64"),
            status: name.starts_with("v4") || name.starts_with("v5"),
            close: name.starts_with("v5"),
        }
    }

    /// A message on `ch` carrying `data`.
    pub fn message(&self, ch: u8, data: &[u8]) -> Message {
        if self.base64 {
            let text = format!(
                "{}{}",
                char::from(b'0' + ch),
                base64::engine::general_purpose::STANDARD.encode(data)
            );
            Message::text(text)
        } else {
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(ch);
            frame.extend_from_slice(data);
            Message::binary(frame)
        }
    }

    /// The channel and data of a message; None for control and malformed
    /// messages.
    pub fn parse(&self, msg: Message) -> Option<(u8, Vec<u8>)> {
        match msg {
            Message::Binary(b) if !b.is_empty() => Some((b[0], b[1..].to_vec())),
            Message::Text(t) if self.base64 && !t.is_empty() => {
                let ch = t.as_bytes()[0].checked_sub(b'0')?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&t.as_bytes()[1..])
                    .ok()?;
                Some((ch, data))
            }
            _ => None,
        }
    }
}

/// The first of the client's subprotocols (comma-separated header value)
/// that the server supports, in the server's order of preference.
pub fn negotiate(offered: &str, supported: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    supported.iter().copied().find(|p| offered.contains(p))
}

/// The v4 Status of an exit: success, or failure with the exit code.
pub fn exit_status(code: i32) -> serde_json::Value {
    if code == 0 {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    }
}

/// The v4 Status of an error.
pub fn error_status(message: &str) -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"})
}

/// The exit code a Status carries: 0 for success, the ExitCode cause for a
/// non-zero exit, the server's message for other failures.
pub fn status_exit_code(status: &serde_json::Value) -> Result<i32, ClientError> {
    if status["status"] == "Success" {
        return Ok(0);
    }
    let causes = status["details"]["causes"].as_array();
    let code = causes.and_then(|c| {
        c.iter()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str()?.parse().ok())
    });
    match code {
        Some(code) if status["reason"] == "NonZeroExitCode" => Ok(code),
        _ => Err(ClientError::Server(
            status["message"].as_str().unwrap_or("failure").to_string(),
        )),
    }
}

/// A session of exec or attach.
pub enum Session {
    /// Exec.
    Exec(ExecRequest),
    /// Attach.
    Attach(AttachRequest),
}

const PIPE: usize = 64 * 1024;

/// Copies `reader` into `ch` messages until end of file.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    ch: u8,
    proto: Protocol,
    out: mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.send(proto.message(ch, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Serves one exec or attach session on `ws` until the backend is done;
/// ends idle sessions after `idle`.
pub async fn serve_remotecommand<S>(
    ws: WebSocketStream<S>,
    proto: Protocol,
    session: Session,
    backend: Arc<dyn Backend>,
    idle: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (wants_stdin, wants_stdout, wants_stderr) = match &session {
        Session::Exec(r) => (r.stdin, r.stdout, r.stderr && !r.tty),
        Session::Attach(r) => (r.stdin, r.stdout, r.stderr && !r.tty),
    };
    let (mut stream, out_tx, writer) = split_with_writer(ws);
    let (stdin_w, stdin_r) = split_pipe(wants_stdin);
    let (stdout_w, stdout_r) = split_pipe(wants_stdout);
    let (stderr_w, stderr_r) = split_pipe(wants_stderr);
    let mut pumps = Vec::new();
    for (r, ch) in [(stdout_r, channel::STDOUT), (stderr_r, channel::STDERR)] {
        if let Some(r) = r {
            pumps.push(tokio::spawn(pump(r, ch, proto, out_tx.clone())));
        }
    }
    let (resize_tx, resize_rx) = mpsc::channel(8);
    let (gone_tx, gone_rx) = watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut stdin = stdin_w;
        while let Some((ch, data)) = next_message(&mut stream, proto, idle).await {
            match ch {
                channel::STDIN => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                channel::RESIZE => {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
                        let dim = |k: &str| v[k].as_u64().unwrap_or(0).min(u16::MAX.into()) as u16;
                        let _ = resize_tx.try_send((dim("Width"), dim("Height")));
                    }
                }
                channel::CLOSE if proto.close && data.first() == Some(&channel::STDIN) => {
                    stdin = None;
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(true);
    });
    let io = StreamIo {
        stdin: stdin_r.map(|r| Box::new(r) as crate::Input),
        stdout: stdout_w.map(|w| Box::new(w) as crate::Output),
        stderr: stderr_w.map(|w| Box::new(w) as crate::Output),
        resize: resize_rx,
        gone: gone_rx,
    };
    let result = match &session {
        Session::Exec(r) => backend.exec(r, io).await,
        Session::Attach(r) => backend.attach(r, io).await.map(|()| 0),
    };
    // The backend dropped its writers: the pumps see end of file.
    for p in pumps {
        let _ = p.await;
    }
    let status = match &result {
        Ok(code) if proto.status => Some(exit_status(*code).to_string()),
        Ok(_) => None,
        Err(e) if proto.status => Some(error_status(&e.to_string()).to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(status) = status {
        let _ = out_tx
            .send(proto.message(channel::ERROR, status.as_bytes()))
            .await;
    }
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
}

type Incoming<S> = futures_util::stream::SplitStream<WebSocketStream<S>>;

/// The client's next channel message; None once it is gone: closed,
/// broken, or silent for `idle`. Messages that carry no channel are skipped.
async fn next_message<S>(
    stream: &mut Incoming<S>,
    proto: Protocol,
    idle: Duration,
) -> Option<(u8, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let next = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => return None,
        };
        if matches!(next, Message::Close(_)) {
            return None;
        }
        if let Some(message) = proto.parse(next) {
            return Some(message);
        }
    }
}

/// The socket's incoming half, a sender of outgoing messages, and the task
/// that writes them (and closes the socket once every sender is gone).
fn split_with_writer<S>(
    ws: WebSocketStream<S>,
) -> (
    Incoming<S>,
    mpsc::Sender<Message>,
    tokio::task::JoinHandle<()>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (stream, out_tx, writer)
}

type PipePair = (
    Option<tokio::io::DuplexStream>,
    Option<tokio::io::DuplexStream>,
);

fn split_pipe(wanted: bool) -> PipePair {
    if wanted {
        let (a, b) = tokio::io::duplex(PIPE);
        (Some(a), Some(b))
    } else {
        (None, None)
    }
}

/// Serves port-forwarding of `ports` on `ws`: one backend connection per
/// port, until every one is closed.
pub async fn serve_port_forward<S>(
    ws: WebSocketStream<S>,
    pod: String,
    ports: Vec<u16>,
    backend: Arc<dyn Backend>,
    idle: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let proto = Protocol::of("v4.channel.k8s.io");
    let (mut stream, out_tx, writer) = split_with_writer(ws);
    let mut inputs = Vec::new();
    let mut sessions = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            let _ = out_tx.send(proto.message(ch, &port.to_le_bytes())).await;
        }
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let (from_conn, to_conn) = tokio::io::split(ours);
        inputs.push(Some(to_conn));
        let out = out_tx.clone();
        let backend = backend.clone();
        let pod = pod.clone();
        sessions.push(tokio::spawn(async move {
            let copy = tokio::spawn(pump(from_conn, data_ch, proto, out.clone()));
            let result = backend.port_forward(&pod, port, Box::new(theirs)).await;
            let _ = copy.await;
            if let Err(e) = result {
                let e = e.to_string();
                let _ = out.send(proto.message(err_ch, e.as_bytes())).await;
            }
        }));
    }
    drop(out_tx);
    let reader = tokio::spawn(async move {
        while let Some((ch, data)) = next_message(&mut stream, proto, idle).await {
            let i = usize::from(ch / 2);
            if ch % 2 != 0 || i >= inputs.len() {
                continue;
            }
            if data.is_empty() {
                // An empty data message closes the sending half.
                if let Some(mut w) = inputs[i].take() {
                    let _ = w.shutdown().await;
                }
                continue;
            }
            if let Some(w) = inputs[i].as_mut()
                && w.write_all(&data).await.is_err()
            {
                inputs[i] = None;
            }
        }
        // The client left: the connections see end of file.
        for mut w in inputs.into_iter().flatten() {
            let _ = w.shutdown().await;
        }
    });
    for s in sessions {
        let _ = s.await;
    }
    let _ = writer.await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_both_encodings() {
        for name in ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"] {
            let p = Protocol::of(name);
            let m = p.message(channel::STDERR, b"\x00hello\xff");
            assert_eq!(p.parse(m), Some((2, b"\x00hello\xff".to_vec())));
        }
        let b64 = Protocol::of("base64.channel.k8s.io");
        assert_eq!(b64.parse(Message::text("1aGk=")), Some((1, b"hi".to_vec())));
        assert_eq!(b64.parse(Message::text("1!!!")), None, "bad base64");
        let bin = Protocol::of("channel.k8s.io");
        assert_eq!(bin.parse(Message::binary(Vec::new())), None);
        assert!(!bin.status && Protocol::of("v5.channel.k8s.io").close);
    }

    #[test]
    fn negotiation_prefers_the_newest() {
        assert_eq!(
            negotiate(
                "channel.k8s.io, v4.channel.k8s.io,v5.channel.k8s.io",
                &EXEC_PROTOCOLS
            ),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(negotiate("v9.channel.k8s.io", &EXEC_PROTOCOLS), None);
    }

    #[test]
    fn statuses_carry_exit_codes() {
        assert_eq!(status_exit_code(&exit_status(0)).unwrap(), 0);
        assert_eq!(status_exit_code(&exit_status(137)).unwrap(), 137);
        assert!(matches!(
            status_exit_code(&error_status("no such container")),
            Err(ClientError::Server(m)) if m == "no such container"
        ));
    }
}
