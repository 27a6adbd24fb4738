//! OpenTelemetry tracing (`[crio.tracing]`): the daemon's spans (one per CRI
//! RPC under the caller's `traceparent`, children for the steps that cost
//! time) exported over OTLP/gRPC, the trace context handed to the shims in
//! the ttrpc metadata, and the shims' own spans, which arrive as events,
//! exported under the shim's service name. Off, nothing here runs but a
//! flag check.

mod rpc;
mod shim_spans;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crio_config::TracingConfig;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

pub use rpc::RpcLayer;
pub use shim_spans::export_shim_spans;

/// `service.name` of the daemon's spans.
const SERVICE_NAME: &str = "crio";
/// How long one export may take; a dead collector costs the exporter's
/// thread this much, never a caller.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether spans are exported (set once, at start-up).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The pipelines, kept for the flush at stop.
static PIPELINES: OnceLock<Pipelines> = OnceLock::new();

/// The daemon's provider and the processor that exports the shims' spans.
struct Pipelines {
    daemon: SdkTracerProvider,
    shims: BatchSpanProcessor,
}

/// The sampler of `[crio.tracing]`: 0 samples nothing, not even a trace
/// the caller sampled; otherwise the caller's decision is followed and a
/// trace begun here is sampled at rate/1e6.
fn sampler(rate_per_million: u32) -> Sampler {
    if rate_per_million == 0 {
        Sampler::AlwaysOff
    } else {
        let ratio = f64::from(rate_per_million.min(1_000_000)) / 1e6;
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
    }
}

/// The OTLP endpoint as a URL (`host:port` gets `http://`).
fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

fn exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, String> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint:?}: {e}"))
}

/// The layer that turns the daemon's spans into OpenTelemetry spans, when
/// `[crio.tracing]` enables them. Must run inside the tokio runtime (the
/// gRPC channel lives there); the exports run on the SDK's own threads.
pub fn layer<S>(config: &TracingConfig) -> Result<Option<Box<dyn Layer<S> + Send + Sync>>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !config.enable_tracing {
        return Ok(None);
    }
    let daemon = SdkTracerProvider::builder()
        .with_sampler(sampler(config.tracing_sampling_rate_per_million))
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .with_batch_exporter(exporter(&config.tracing_endpoint)?)
        .build();
    let mut shims = BatchSpanProcessor::builder(exporter(&config.tracing_endpoint)?).build();
    opentelemetry_sdk::trace::SpanProcessor::set_resource(
        &mut shims,
        &Resource::builder()
            .with_service_name(crio_contract::trace::SHIM_SERVICE_NAME)
            .build(),
    );
    let tracer = daemon.tracer(SERVICE_NAME);
    let _ = PIPELINES.set(Pipelines { daemon, shims });
    ENABLED.store(true, Ordering::Release);
    // Only spans, and only ours: events stay in the log.
    let ours = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("crio_")
    });
    Ok(Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(ours)
            .boxed(),
    ))
}

/// A span for one step of a call (`rootfs`, `spec`…), child of the
/// current span; it costs nothing unless tracing or debug logs want it.
pub fn step(name: &str) -> tracing::Span {
    tracing::debug_span!("step", otel.name = name)
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Exports what is buffered and stops the pipelines (at the daemon's stop).
pub fn shutdown() {
    if let Some(p) = PIPELINES.get() {
        let _ = p.daemon.shutdown();
        let _ = opentelemetry_sdk::trace::SpanProcessor::shutdown(&p.shims);
    }
}

/// The trace context of `headers` (the caller's `traceparent`), made the
/// parent of `span`.
pub fn adopt_parent(span: &tracing::Span, headers: &tonic::codegen::http::HeaderMap) {
    if !enabled() || !headers.contains_key(crio_contract::trace::TRACEPARENT) {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// The `traceparent` of the current span when it is sampled, for a call to
/// a shim: the shim records its spans under it.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_sampled() {
        return None;
    }
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.0.remove(crio_contract::trace::TRACEPARENT)
}

struct HeaderExtractor<'a>(&'a tonic::codegen::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(tonic::codegen::http::HeaderName::as_str)
            .collect()
    }
}

#[derive(Default)]
struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_urls() {
        assert_eq!(endpoint_url("0.0.0.0:4317"), "http://0.0.0.0:4317");
        assert_eq!(endpoint_url("https://otel:4317"), "https://otel:4317");
    }

    #[test]
    fn rate_zero_samples_nothing() {
        assert!(matches!(sampler(0), Sampler::AlwaysOff));
        assert!(matches!(sampler(1), Sampler::ParentBased(_)));
    }
}
