//! A real OTLP/gRPC trace receiver (the collector's TraceService from
//! `opentelemetry-proto`, served with tonic on a loopback port): it keeps
//! every span it is sent, with the `service.name` of its resource.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

/// A span as received, with the service that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `service.name` of the span's resource.
    pub service: String,
    /// The span.
    pub span: Span,
}

impl Received {
    /// The span's trace ID in hex.
    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    /// The span's ID in hex.
    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    /// Its parent's ID in hex ("" for a root).
    pub fn parent_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }

    /// The span as JSON (what `scripts/trace-svg.py` draws).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "service": self.service,
            "name": self.span.name,
            "trace_id": self.trace_id(),
            "span_id": self.span_id(),
            "parent_span_id": self.parent_id(),
            "start_ns": self.span.start_time_unix_nano,
            "end_ns": self.span.end_time_unix_nano,
        })
    }
}

#[derive(Default, Clone)]
struct Store(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut store = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    store.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The receiver, served until dropped.
pub struct Receiver {
    addr: SocketAddr,
    store: Store,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Serves on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let store = Store::default();
        let service = TraceServiceServer::new(store.clone());
        let server = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Self {
            addr,
            store,
            server,
        })
    }

    /// `host:port`, as `tracing_endpoint` takes it.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.store.0.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until `done` holds for the spans received;
    /// the spans then, or the error naming what arrived.
    pub async fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> anyhow::Result<Vec<Received>> {
        let deadline = Instant::now() + limit;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if Instant::now() > deadline {
                let names: Vec<_> = spans
                    .iter()
                    .map(|s| {
                        let (trace, parent) = (s.trace_id(), s.parent_id());
                        format!(
                            "{}:{} trace {trace} parent {parent}",
                            s.service, s.span.name
                        )
                    })
                    .collect();
                anyhow::bail!("spans received in {limit:?}: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
