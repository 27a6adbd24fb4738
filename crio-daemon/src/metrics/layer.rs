//! The per-RPC layer of the gRPC server: each call's name, answer and
//! duration to [`Metrics::observe_operation`](super::Metrics::observe_operation).
//! The answer is the `grpc-status` of the response's headers (tonic puts
//! an error there); a response without one is a success, its status
//! coming in the trailers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::{Request, Response};

/// Counts every call of the service it wraps.
#[derive(Clone, Copy, Debug, Default)]
pub struct OperationsLayer;

impl<S> tower::Layer<S> for OperationsLayer {
    type Service = Operations<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Operations { inner }
    }
}

/// A service whose calls are counted.
#[derive(Clone, Debug)]
pub struct Operations<S> {
    inner: S,
}

/// The RPC's name: the last part of the gRPC path
/// (`/runtime.v1.RuntimeService/RunPodSandbox`), as CRI-O labels it.
fn method(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The gRPC answer a response's headers carry (none: a success so far).
fn code<B>(response: &Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes()))
}

impl<S, B, RB> tower::Service<Request<B>> for Operations<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let name = method(req.uri().path()).to_string();
        let started = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let result = answer.await;
            let code = result.as_ref().map_or(tonic::Code::Internal, code);
            super::global().observe_operation(&name, code, started.elapsed());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        assert_eq!(
            method("/runtime.v1.RuntimeService/RunPodSandbox"),
            "RunPodSandbox"
        );
        let ok = Response::new(());
        assert_eq!(code(&ok), tonic::Code::Ok);
        let mut failed = Response::new(());
        failed
            .headers_mut()
            .insert("grpc-status", "5".parse().unwrap());
        assert_eq!(code(&failed), tonic::Code::NotFound);
    }
}
