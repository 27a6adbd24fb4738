//! One span, one log line and one count per CRI RPC, as a tower layer
//! around the gRPC routes: the span (named after the RPC, child of the
//! caller's `traceparent`) is the parent of every step the handler takes;
//! the line says the result and the duration, at debug, or at warn with the
//! gRPC code when the call failed; the operation metrics count the call,
//! its code and its latency. The code is the `grpc-status` of the
//! response's headers (tonic puts an error there); a response without one
//! is a success, its status coming in the trailers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tracing::Instrument;
use tracing::field::Empty;

/// The per-RPC span and log layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLayer;

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

/// A gRPC service wrapped by [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
}

/// `("RunPodSandbox", "runtime.v1.RuntimeService")` of a gRPC path.
fn rpc_name(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or(service);
    (method, service)
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (method, service) = rpc_name(req.uri().path());
        let method = method.to_string();
        let span = tracing::debug_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        super::adopt_parent(&span, req.headers());
        let started = Instant::now();
        let answer = self.inner.call(req).instrument(span.clone());
        Box::pin(async move {
            let result = answer.await;
            let elapsed = started.elapsed();
            let status = match &result {
                Ok(resp) => tonic::Status::from_header_map(resp.headers())
                    .filter(|s| s.code() != tonic::Code::Ok),
                Err(e) => Some(tonic::Status::internal(e.to_string())),
            };
            let code = status.as_ref().map_or(tonic::Code::Ok, |s| s.code());
            crate::metrics::global().observe_operation(&method, code, elapsed);
            // Milliseconds to the microsecond.
            let ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
            span.record("rpc.grpc.status_code", code as i32);
            match status {
                None => tracing::debug!(rpc = %method, code = "OK", duration_ms = ms, "RPC done"),
                Some(status) => {
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_description", status.message());
                    tracing::warn!(
                        rpc = %method,
                        code = ?status.code(),
                        duration_ms = ms,
                        "RPC failed: {}",
                        status.message()
                    );
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_paths() {
        assert_eq!(
            rpc_name("/runtime.v1.RuntimeService/RunPodSandbox"),
            ("RunPodSandbox", "runtime.v1.RuntimeService")
        );
        assert_eq!(rpc_name("/odd"), ("odd", "odd"));
    }
}
