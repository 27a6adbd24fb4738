//! A client of the streaming protocol over WebSocket: exec and attach
//! sessions and forwarded ports.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::ws::{self, Protocol, channel};

/// What can go wrong for a client of the streaming server, over WebSocket
/// ([`remotecommand`], [`port_forward`]) or SPDY ([`crate::kube_spdy`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be dialled.
    #[error("bad streaming URL {url}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// SPDY is spoken over plain HTTP only.
    #[error("{url}: only http:// URLs are supported over SPDY")]
    NotHttp {
        /// The URL.
        url: String,
    },
    /// The offered subprotocols do not fit in a header.
    #[error(transparent)]
    Protocols(#[from] tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue),
    /// The WebSocket connection or handshake failed.
    #[error("{url}: {source}")]
    WebSocket {
        /// The URL.
        url: String,
        /// Why.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The SPDY connection failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server answered the WebSocket handshake with an HTTP error.
    #[error("{url}: {status} {body}")]
    Http {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: tokio_tungstenite::tungstenite::http::StatusCode,
        /// The body of the answer.
        body: String,
    },
    /// The server did not switch to SPDY: its status line and body.
    #[error("{url}: {status}: {body}")]
    Upgrade {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
        /// The body of the answer.
        body: String,
    },
    /// The server's answer to the SPDY upgrade never ended.
    #[error("{url}: response headers too long")]
    HeadersTooLong {
        /// The URL.
        url: String,
    },
    /// The server closed the connection before the SPDY upgrade.
    #[error("{url}: connection closed during the upgrade")]
    ClosedDuringUpgrade {
        /// The URL.
        url: String,
    },
    /// The server chose another protocol than the one offered.
    #[error("{url}: the server chose {chosen:?}, not {wanted}")]
    Protocol {
        /// The URL.
        url: String,
        /// What the server chose.
        chosen: String,
        /// What was offered.
        wanted: &'static str,
    },
    /// A SPDY stream could not be opened.
    #[error(transparent)]
    Closed(#[from] crate::spdy::Closed),
    /// The status the server sent is not JSON.
    #[error("bad status from the server: {0}")]
    BadStatus(#[from] serde_json::Error),
    /// The session failed on the server's side: its message.
    #[error("{0}")]
    Server(String),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to a streaming URL (`http://…`), offering `protocols`; the
/// socket and the subprotocol the server chose.
async fn connect(url: &str, protocols: &[&str]) -> Result<(Ws, String), ClientError> {
    let ws_url = match url.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}"),
        None => match url.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => url.to_string(),
        },
    };
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::Url {
            url: url.to_string(),
            source: Box::new(e),
        })?;
    let offer = HeaderValue::from_str(&protocols.join(", "))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", offer);
    let (ws, resp) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => ClientError::Http {
                url: url.to_string(),
                status: r.status(),
                body: String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
                    .trim()
                    .to_string(),
            },
            other => ClientError::WebSocket {
                url: url.to_string(),
                source: Box::new(other),
            },
        })?;
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ws, chosen))
}

/// What a client session sends as stdin (read on a task of its own).
pub trait SessionInput: AsyncRead + Unpin + Send + 'static {}
impl<T: AsyncRead + Unpin + Send + 'static> SessionInput for T {}

/// Where a client session writes stdout or stderr.
pub trait SessionOutput: AsyncWrite + Unpin {}
impl<T: AsyncWrite + Unpin> SessionOutput for T {}

/// The streams of a client session. `stdin` None: no stdin is sent.
pub struct Streams<I, O, E> {
    /// What to send as stdin.
    pub stdin: Option<I>,
    /// Where stdout goes.
    pub stdout: O,
    /// Where stderr goes.
    pub stderr: E,
    /// Terminal sizes (width, height) to send.
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

/// Runs an exec or attach session at `url`, offering `protocols` (see
/// [`ws::EXEC_PROTOCOLS`]); the exit code the server reports (0 when the
/// protocol carries none).
pub async fn remotecommand<I: SessionInput, O: SessionOutput, E: SessionOutput>(
    url: &str,
    protocols: &[&str],
    streams: Streams<I, O, E>,
) -> Result<i32, ClientError> {
    let (ws, chosen) = connect(url, protocols).await?;
    let proto = Protocol::of(&chosen);
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut senders = Vec::new();
    if let Some(mut input) = streams.stdin {
        let tx = tx.clone();
        senders.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .send(proto.message(channel::STDIN, &buf[..n]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            if proto.close {
                let _ = tx
                    .send(proto.message(channel::CLOSE, &[channel::STDIN]))
                    .await;
            }
        }));
    }
    if let Some(mut resize) = streams.resize {
        let tx = tx.clone();
        senders.push(tokio::spawn(async move {
            while let Some((w, h)) = resize.recv().await {
                let size = serde_json::json!({"Width": w, "Height": h}).to_string();
                if tx
                    .send(proto.message(channel::RESIZE, size.as_bytes()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let (mut stdout, mut stderr) = (streams.stdout, streams.stderr);
    let mut result = Ok(0);
    while let Some(Ok(msg)) = stream.next().await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
        let Some((ch, data)) = proto.parse(msg) else {
            continue;
        };
        match ch {
            channel::STDOUT => {
                let _ = stdout.write_all(&data).await;
                let _ = stdout.flush().await;
            }
            channel::STDERR => {
                let _ = stderr.write_all(&data).await;
                let _ = stderr.flush().await;
            }
            channel::ERROR if proto.status => {
                result = serde_json::from_slice::<serde_json::Value>(&data)
                    .map_err(ClientError::from)
                    .and_then(|s| ws::status_exit_code(&s));
            }
            channel::ERROR if !data.is_empty() => {
                result = Err(ClientError::Server(
                    String::from_utf8_lossy(&data).into_owned(),
                ));
            }
            _ => {}
        }
    }
    for s in senders {
        s.abort();
    }
    writer.abort();
    result
}

/// Opens a forwarded connection to `port` of the pod behind `url`; bytes
/// written to the returned stream reach the port, and back. An error the
/// server reports ends the stream.
pub async fn port_forward(url: &str, port: u16) -> Result<DuplexStream, ClientError> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let (ws, _) = connect(
        &format!("{url}{sep}port={port}"),
        &ws::PORT_FORWARD_PROTOCOLS,
    )
    .await?;
    let proto = Protocol::of("v4.channel.k8s.io");
    let (mut sink, mut stream) = ws.split();
    let (user, ours) = tokio::io::duplex(64 * 1024);
    let (mut from_user, mut to_user) = tokio::io::split(ours);
    tokio::spawn(async move {
        let up = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_user.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(proto.message(0, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // End of the user's data: close our half.
            let _ = sink.send(proto.message(0, &[])).await;
            std::future::pending::<()>().await;
        };
        let down = async {
            let mut seen_port = [false; 2];
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                let Some((ch, mut data)) = proto.parse(msg) else {
                    continue;
                };
                if ch > 1 {
                    continue;
                }
                if !seen_port[usize::from(ch)] {
                    // Each channel opens with the port number.
                    seen_port[usize::from(ch)] = true;
                    data.drain(..data.len().min(2));
                }
                if ch == 1 {
                    if !data.is_empty() {
                        let _ = to_user.shutdown().await;
                        return;
                    }
                } else if !data.is_empty() && to_user.write_all(&data).await.is_err() {
                    return;
                }
            }
            let _ = to_user.shutdown().await;
        };
        tokio::select! {
            _ = up => {}
            _ = down => {}
        }
    });
    Ok(user)
}

/// Opens a forwarded connection over `transport`.
pub async fn connect_port(
    url: &str,
    port: u16,
    transport: crate::Transport,
) -> Result<DuplexStream, ClientError> {
    match transport {
        crate::Transport::WebSocket => port_forward(url, port).await,
        crate::Transport::Spdy => crate::kube_spdy::port_forward(url, port).await,
    }
}

/// Runs an exec or attach session over `transport`; `tty`: the session
/// has a terminal (SPDY opens no stderr stream then).
pub async fn session<I: SessionInput, O: SessionOutput, E: SessionOutput>(
    url: &str,
    transport: crate::Transport,
    tty: bool,
    streams: Streams<I, O, E>,
) -> Result<i32, ClientError> {
    match transport {
        crate::Transport::WebSocket => remotecommand(url, &ws::EXEC_PROTOCOLS, streams).await,
        crate::Transport::Spdy => {
            crate::kube_spdy::remotecommand(url, &crate::kube_spdy::EXEC_PROTOCOLS, tty, streams)
                .await
        }
    }
}

/// Accepts connections on `listener` and forwards each to `port` through
/// a new session at a URL from `next_url` (one per connection); a failure
/// of either is printed and ends only that connection.
pub async fn forward<F, Fut, E>(
    listener: tokio::net::TcpListener,
    port: u16,
    transport: crate::Transport,
    next_url: F,
) -> std::io::Result<()>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String, E>> + Send,
    E: std::fmt::Display,
{
    let next_url = std::sync::Arc::new(next_url);
    loop {
        let (mut local, _) = listener.accept().await?;
        let next_url = next_url.clone();
        tokio::spawn(async move {
            let url = match next_url().await {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("port-forward: {e}");
                    return;
                }
            };
            match connect_port(&url, port, transport).await {
                Ok(mut remote) => {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                }
                Err(e) => eprintln!("port-forward: {e}"),
            }
        });
    }
}
