//! The streaming HTTP server: a token per request, WebSocket upgrades.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::kube_spdy;
use crate::tokens::Tokens;
use crate::ws::{self, Protocol, Session};
use crate::{Backend, Error, Request};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0: a free port).
    pub addr: SocketAddr,
    /// Sessions without traffic this long are closed.
    pub idle_timeout: Duration,
    /// How long a URL stays valid before it is used.
    pub token_ttl: Duration,
    /// Pending requests at most.
    pub max_pending: usize,
    /// Serve HTTPS with these files.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            idle_timeout: Duration::from_secs(4 * 3600),
            token_ttl: Duration::from_secs(60),
            max_pending: 1000,
            tls: None,
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
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, text: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
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
        });
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.wait_for(|s| *s) => break,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(req, shared)) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls.map(|t| t.acceptor()) {
                        None => {
                            let _ = http
                                .serve_connection(TokioIo::new(tcp), service)
                                .with_upgrades()
                                .await;
                        }
                        Some(Ok(acceptor)) => {
                            // A client without an acceptable certificate
                            // fails here.
                            if let Ok(Ok(stream)) =
                                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                                    .await
                            {
                                let _ = http
                                    .serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                        Some(Err(_)) => {}
                    }
                });
            }
        });
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

/// The ports of a port-forward URL's query (`?port=80&port=8080`).
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .map(|p| p.parse::<u16>().map_err(|_| format!("bad port {p:?}")))
        .collect()
}

fn handle(mut req: hyper::Request<Incoming>, shared: Arc<Shared>) -> Reply {
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
    let header = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let upgrade = header(header::UPGRADE);
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        return spdy_upgrade(req, request, shared);
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return reply(
            StatusCode::BAD_REQUEST,
            "upgrade to SPDY/3.1 or websocket to stream",
        );
    }
    let key = header(header::SEC_WEBSOCKET_KEY);
    if key.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    }
    let offered = header(header::SEC_WEBSOCKET_PROTOCOL);
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
            let asked = match query_ports(req.uri().query()) {
                Ok(p) => p,
                Err(e) => return reply(StatusCode::BAD_REQUEST, &e),
            };
            let allowed = |p: &u16| pf.ports.is_empty() || pf.ports.contains(&i32::from(*p));
            if asked.is_empty() || !asked.iter().all(allowed) {
                return reply(
                    StatusCode::BAD_REQUEST,
                    &format!("ports {asked:?} are not among the requested {:?}", pf.ports),
                );
            }
            asked
        }
        _ => Vec::new(),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let backend = shared.backend.clone();
        match request {
            Request::Exec(r) => {
                ws::serve_remotecommand(
                    ws,
                    Protocol::of(protocol),
                    Session::Exec(r),
                    backend,
                    shared.idle,
                )
                .await
            }
            Request::Attach(r) => {
                ws::serve_remotecommand(
                    ws,
                    Protocol::of(protocol),
                    Session::Attach(r),
                    backend,
                    shared.idle,
                )
                .await
            }
            Request::PortForward(pf) => {
                ws::serve_port_forward(ws, pf.pod_sandbox_id, ports, backend, shared.idle).await
            }
        }
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
                kube_spdy::serve_port_forward(session, pf.pod_sandbox_id, pf.ports, backend).await
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
    fn ports_from_the_query() {
        assert_eq!(query_ports(Some("port=80&port=8080")).unwrap(), [80, 8080]);
        assert_eq!(query_ports(None).unwrap(), Vec::<u16>::new());
        assert!(query_ports(Some("port=99999")).is_err());
    }
}
