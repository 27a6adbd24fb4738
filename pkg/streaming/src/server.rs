//! The streaming HTTP server: a token per request, WebSocket upgrades.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::kube_spdy;
use crate::tokens::Tokens;
use crate::ws::{self, Protocol, Session};
use crate::{Backend, Error, PortForwardRequest, Request};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0: a free port).
    pub addr: SocketAddr,
    /// Sessions without traffic this long are closed (default 4 hours, as
    /// CRI-O).
    pub idle_timeout: Duration,
    /// How long a URL stays valid before it is used.
    pub token_ttl: Duration,
    /// Pending requests at most.
    pub max_pending: usize,
    /// Serve HTTPS with these files.
    pub tls: Option<crate::tls::TlsFiles>,
    /// A client has this long to finish the TLS handshake, and then again
    /// to send its request head. A connection serves one request (a
    /// session after an upgrade, else it closes), so no connection idles
    /// outside a session, which has `idle_timeout`.
    pub header_timeout: Duration,
    /// Connections served at once, upgraded sessions included; further
    /// clients wait in the listen backlog (file descriptors are shared
    /// with the CRI socket).
    pub max_connections: usize,
    /// Port-forward streams one session may have waiting for their partner
    /// stream, and forwarded connections it may run at once (ports of a
    /// WebSocket port-forward).
    pub max_port_forward_streams: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            idle_timeout: Duration::from_secs(4 * 3600),
            token_ttl: Duration::from_secs(60),
            max_pending: 1000,
            tls: None,
            header_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_port_forward_streams: 64,
        }
    }
}

/// A running streaming server.
pub struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    tokens: Arc<Tokens>,
    stop: watch::Sender<bool>,
}

struct Shared {
    tokens: Arc<Tokens>,
    backend: Arc<dyn Backend>,
    idle: Duration,
    max_port_forward_streams: usize,
}

type Reply = Response<Full<Bytes>>;

/// An answer that ends the connection (an upgrade replaces the header):
/// streaming clients send one request per connection, so no connection
/// idles between requests.
fn reply(status: StatusCode, text: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

impl Server {
    /// Binds `config.addr` and serves `backend`'s sessions.
    pub async fn start(config: ServerConfig, backend: Arc<dyn Backend>) -> std::io::Result<Self> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(
                crate::tls::Reloading::new(files.clone()).map_err(std::io::Error::other)?,
            )),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let tokens = Arc::new(Tokens::new(config.token_ttl, config.max_pending));
        let shared = Arc::new(Shared {
            tokens: tokens.clone(),
            backend,
            idle: config.idle_timeout,
            max_port_forward_streams: config.max_port_forward_streams,
        });
        let (stop, stopped) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let header_timeout = config.header_timeout;
        tokio::spawn(accept_loop(listener, stopped, limit, move |tcp, permit| {
            let conn = Connection {
                io: Counted {
                    io: tcp,
                    _permit: permit,
                },
                shared: shared.clone(),
                tls: tls.clone(),
                header_timeout,
            };
            tokio::spawn(conn.serve());
        }));
        Ok(Self {
            addr,
            scheme,
            tokens,
            stop,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers `request`; the URL the client is to use.
    pub fn url(&self, request: Request) -> Result<String, Error> {
        let kind = request.kind();
        let token = self.tokens.insert(request)?;
        Ok(format!("{}://{}/{kind}/{token}", self.scheme, self.addr))
    }

    /// Stops accepting connections (running sessions go on).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections while fewer than the bound are open (the rest wait
/// in the listen backlog, holding no descriptor of ours), backing off when
/// accepting fails, until `stopped`.
async fn accept_loop<F>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    limit: Arc<Semaphore>,
    mut serve: F,
) where
    F: FnMut(TcpStream, OwnedSemaphorePermit),
{
    let mut backoff = AcceptBackoff::default();
    let mut at_limit = false;
    loop {
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => {
                at_limit = false;
                p
            }
            Err(_) => {
                if !at_limit {
                    at_limit = true;
                    tracing::warn!("streaming connections at their bound: new ones wait");
                }
                tokio::select! {
                    p = limit.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((tcp, _)) => {
                if let Some(failures) = backoff.succeeded() {
                    tracing::info!(failures, "streaming server accepting again");
                }
                serve(tcp, permit);
            }
            Err(e) => {
                let Some(delay) = backoff.failed(&e) else {
                    continue;
                };
                if backoff.failures == 1 {
                    tracing::warn!(
                        "streaming server: accept: {e}; retrying with back-off until it works"
                    );
                }
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
        }
    }
}

/// The wait after a failed accept. An error about the one connection (it
/// was reset or aborted before we took it) needs none; any other (EMFILE,
/// ENFILE, ENOBUFS, ENOMEM) persists while the listener stays readable, so
/// accepting again at once would only spin: wait 10 ms, doubling up to 1 s
/// while failures go on.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failed accepts in a row (errors about one connection aside).
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Notes a failed accept; how long to wait before the next one (None:
    /// at once).
    fn failed(&mut self, e: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
        if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
            return None;
        }
        let delay = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        Some(delay)
    }

    /// Notes a successful accept; the failures before it, if any.
    fn succeeded(&mut self) -> Option<u32> {
        let failures = std::mem::take(&mut self.failures);
        (failures > 0).then_some(failures)
    }
}

/// A connection's socket, holding its place among the bounded connections
/// for as long as it lives (after an upgrade, inside the session).
struct Counted<S> {
    io: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// One accepted connection: TLS if configured, then one HTTP request.
struct Connection {
    io: Counted<TcpStream>,
    shared: Arc<Shared>,
    tls: Option<Arc<crate::tls::Reloading>>,
    header_timeout: Duration,
}

impl Connection {
    async fn serve(self) {
        let shared = self.shared;
        let service = hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(req, shared)) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        match self.tls.map(|t| t.acceptor()) {
            None => {
                let _ = http
                    .serve_connection(TokioIo::new(self.io), service)
                    .with_upgrades()
                    .await;
            }
            Some(Ok(acceptor)) => {
                // A client without an acceptable certificate fails here.
                let handshake = acceptor.accept(self.io);
                if let Ok(Ok(stream)) = tokio::time::timeout(self.header_timeout, handshake).await {
                    let _ = http
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                }
            }
            Some(Err(_)) => {}
        }
    }
}

/// A `port=` of a port-forward URL that is not a port number.
#[derive(Debug, thiserror::Error)]
#[error("bad port {0:?}")]
struct BadPort(String);

/// The ports of a port-forward URL's query (`?port=80&port=8080`).
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, BadPort> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .map(|p| p.parse::<u16>().map_err(|_| BadPort(p.to_string())))
        .collect()
}

fn handle(req: hyper::Request<Incoming>, shared: Arc<Shared>) -> Reply {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let request = match shared.tokens.take(token) {
        Some(r) if r.kind() == kind => r,
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                "unknown, used or expired streaming URL",
            );
        }
    };
    let upgrade = header_value(&req, header::UPGRADE);
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        return spdy_upgrade(req, request, shared);
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return reply(
            StatusCode::BAD_REQUEST,
            "upgrade to SPDY/3.1 or websocket to stream",
        );
    }
    websocket_upgrade(req, request, shared)
}

/// A request header as text (empty when absent or not text).
fn header_value(req: &hyper::Request<Incoming>, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Why the ports of a WebSocket port-forward URL are refused.
#[derive(Debug, thiserror::Error)]
enum PortsRefused {
    /// A `port=` that is not a port.
    #[error(transparent)]
    BadPort(#[from] BadPort),
    /// None asked, or one the CRI request did not name.
    #[error("ports {asked:?} are not among the requested {requested:?}")]
    NotRequested {
        asked: Vec<u16>,
        requested: Vec<i32>,
    },
    /// More than the channel numbering (or the configured bound) allows.
    #[error("{asked} ports asked: too many (at most {most})")]
    TooMany { asked: usize, most: usize },
}

/// The ports a WebSocket port-forward asks for in its query, checked
/// against the CRI request and the bound on streams.
fn forwarded_ports(
    pf: &PortForwardRequest,
    query: Option<&str>,
    max_streams: usize,
) -> Result<Vec<u16>, PortsRefused> {
    let asked = query_ports(query)?;
    let allowed = |p: &u16| pf.ports.is_empty() || pf.ports.contains(&i32::from(*p));
    if asked.is_empty() || !asked.iter().all(allowed) {
        return Err(PortsRefused::NotRequested {
            asked,
            requested: pf.ports.clone(),
        });
    }
    // Two channels per port, numbered in one byte.
    let most = max_streams.min(127);
    if asked.len() > most {
        return Err(PortsRefused::TooMany {
            asked: asked.len(),
            most,
        });
    }
    Ok(asked)
}

/// Answers a WebSocket upgrade: the subprotocol both sides speak, then the
/// session.
fn websocket_upgrade(
    mut req: hyper::Request<Incoming>,
    request: Request,
    shared: Arc<Shared>,
) -> Reply {
    let key = header_value(&req, header::SEC_WEBSOCKET_KEY);
    if key.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    }
    let offered = header_value(&req, header::SEC_WEBSOCKET_PROTOCOL);
    let supported: &[&'static str] = match request {
        Request::PortForward(_) => &ws::PORT_FORWARD_PROTOCOLS,
        _ => &ws::EXEC_PROTOCOLS,
    };
    let Some(protocol) = ws::negotiate(&offered, supported) else {
        return reply(
            StatusCode::BAD_REQUEST,
            &format!("no supported subprotocol in {offered:?}; this server speaks {supported:?}"),
        );
    };
    let ports = match &request {
        Request::PortForward(pf) => {
            match forwarded_ports(pf, req.uri().query(), shared.max_port_forward_streams) {
                Ok(p) => p,
                Err(e) => return reply(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        _ => Vec::new(),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let backend = shared.backend.clone();
        let session = match request {
            Request::Exec(r) => Session::Exec(r),
            Request::Attach(r) => Session::Attach(r),
            Request::PortForward(pf) => {
                let pod = pf.pod_sandbox_id;
                return ws::serve_port_forward(ws, pod, ports, backend, shared.idle).await;
            }
        };
        let protocol = Protocol::of(protocol);
        ws::serve_remotecommand(ws, protocol, session, backend, shared.idle).await
    });
    let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, "");
    *r.body_mut() = Full::new(Bytes::new());
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    r
}

/// Answers a SPDY/3.1 upgrade: the newest `X-Stream-Protocol-Version`
/// both sides speak, then the session.
fn spdy_upgrade(mut req: hyper::Request<Incoming>, request: Request, shared: Arc<Shared>) -> Reply {
    let offered: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let supported: &[&'static str] = match request {
        Request::PortForward(_) => &[kube_spdy::PORT_FORWARD_PROTOCOL],
        _ => &kube_spdy::EXEC_PROTOCOLS,
    };
    let Some(protocol) = supported
        .iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
    else {
        return reply(
            StatusCode::FORBIDDEN,
            &format!(
                "no supported X-Stream-Protocol-Version in {offered:?}; this server speaks {supported:?}"
            ),
        );
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let session = crate::spdy::Session::start(TokioIo::new(upgraded), true);
        let backend = shared.backend.clone();
        let watchdog = {
            let session = session.clone();
            let idle = shared.idle;
            tokio::spawn(async move {
                let tick = idle.min(Duration::from_secs(1));
                loop {
                    tokio::time::sleep(tick).await;
                    if session.idle_for() >= idle {
                        session.close().await;
                        return;
                    }
                }
            })
        };
        match request {
            Request::Exec(r) => {
                kube_spdy::serve_remotecommand(session, protocol, Session::Exec(r), backend).await
            }
            Request::Attach(r) => {
                kube_spdy::serve_remotecommand(session, protocol, Session::Attach(r), backend).await
            }
            Request::PortForward(pf) => {
                let most = shared.max_port_forward_streams;
                kube_spdy::serve_port_forward(session, pf.pod_sandbox_id, pf.ports, backend, most)
                    .await
            }
        }
        watchdog.abort();
    });
    let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, "");
    *r.body_mut() = Full::new(Bytes::new());
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "X-Stream-Protocol-Version",
        HeaderValue::from_static(protocol),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_and_reset() {
        let mut b = AcceptBackoff::default();
        let emfile = std::io::Error::from_raw_os_error(24);
        let delays: Vec<_> = (0..10).map(|_| b.failed(&emfile).unwrap()).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[9], Duration::from_secs(1), "capped");
        // An error about one connection: retry at once, not a failure.
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&aborted), None);
        assert_eq!(b.succeeded(), Some(10));
        assert_eq!(b.succeeded(), None);
        assert_eq!(b.failed(&emfile), Some(Duration::from_millis(10)));
        // Many failures in a row do not overflow.
        for _ in 0..100 {
            assert!(b.failed(&emfile).unwrap() <= Duration::from_secs(1));
        }
    }

    #[test]
    fn ports_from_the_query() {
        assert_eq!(query_ports(Some("port=80&port=8080")).unwrap(), [80, 8080]);
        assert_eq!(query_ports(None).unwrap(), Vec::<u16>::new());
        assert!(query_ports(Some("port=99999")).is_err());
    }
}
