//! The metrics endpoint: `GET /metrics` over HTTP/1.1 on
//! `metrics_host:metrics_port`, HTTPS when `metrics_cert` and `metrics_key`
//! are both set (the files read again when they change), and also on
//! `metrics_socket` when set.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context, Result};
use crio_config::MetricsConfig;
use crio_streaming::tls::{Reloading, TlsFiles};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a client has to finish its TLS handshake, or to send a
/// request's headers.
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the endpoint rests after a failed accept (out of descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Binds the configured addresses and serves the process's metrics on
/// them in the background; an address that cannot be bound is the error.
pub async fn serve(config: &MetricsConfig) -> Result<()> {
    let tls = (!config.metrics_cert.as_os_str().is_empty()
        && !config.metrics_key.as_os_str().is_empty())
    .then(|| {
        Reloading::new(TlsFiles {
            cert: config.metrics_cert.clone(),
            key: config.metrics_key.clone(),
            ca: None,
        })
    })
    .transpose()
    .context("crio.metrics.metrics_cert/metrics_key")?
    .map(Arc::new);
    let host = config.metrics_host.as_str();
    let address = (host, config.metrics_port);
    let tcp = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("bind the metrics endpoint {host}:{}", config.metrics_port))?;
    let local = tcp.local_addr()?;
    tracing::info!(address = %local, tls = tls.is_some(), "serving metrics");
    tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((stream, _)) => {
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            Some(tls) => serve_tls(&tls, stream).await,
                            None => serve_connection(stream).await,
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
    let socket = &config.metrics_socket;
    if !socket.as_os_str().is_empty() {
        // A socket file left by an earlier run is replaced.
        let _ = std::fs::remove_file(socket);
        let unix = tokio::net::UnixListener::bind(socket)
            .with_context(|| format!("bind the metrics socket {}", socket.display()))?;
        tracing::info!(socket = %socket.display(), "serving metrics");
        tokio::spawn(async move {
            while let Ok((stream, _)) = unix.accept().await {
                tokio::spawn(serve_connection(stream));
            }
        });
    }
    Ok(())
}

async fn serve_tls(tls: &Reloading, stream: tokio::net::TcpStream) {
    let acceptor = match tls.acceptor() {
        Ok(a) => a,
        Err(e) => return tracing::warn!("metrics endpoint: TLS: {e}"),
    };
    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_connection(stream).await,
        Ok(Err(e)) => tracing::debug!("metrics endpoint: TLS handshake: {e}"),
        Err(_) => tracing::debug!("metrics endpoint: TLS handshake timed out"),
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it.
async fn serve_connection(stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
    let service =
        hyper::service::service_fn(|req| async move { Ok::<_, Infallible>(answer(&req).await) });
    let io = hyper_util::rt::TokioIo::new(stream);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_DEADLINE)
        .serve_connection(io, service)
        .await
    {
        tracing::debug!("metrics connection: {e}");
    }
}

/// `GET /metrics`: the exposition (read off the executor: it reads
/// `/proc`); anything else is refused.
async fn answer(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            match tokio::task::spawn_blocking(|| super::global().render()).await {
                Ok(text) => (StatusCode::OK, text),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()),
        _ => (StatusCode::NOT_FOUND, "metrics are at /metrics\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(prometheus::TEXT_FORMAT),
    );
    response
}
