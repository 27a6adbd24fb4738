//! The shims' spans: a shim records them under the `traceparent` the daemon
//! sent and sends them back in a task event; here they become OpenTelemetry
//! spans of the shim's service (their IDs and times as the shim gave them)
//! and leave with the next OTLP export.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crio_contract::trace::{ERROR_ATTRIBUTE, SpanRecord};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

/// Exports the spans of a shim's event payload; nothing when tracing is off.
pub fn export_shim_spans(payload: &[u8]) {
    let Some(pipelines) = super::PIPELINES.get() else {
        return;
    };
    for record in crio_contract::trace::decode_spans(payload) {
        pipelines.shims.on_end(span_data(record));
    }
}

fn time(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

fn span_data(record: SpanRecord) -> SpanData {
    let mut status = Status::Ok;
    let attributes = record
        .attributes
        .into_iter()
        .map(|(k, v)| {
            if k == ERROR_ATTRIBUTE {
                status = Status::error(v.clone());
            }
            KeyValue::new(k, v)
        })
        .collect();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(record.trace_id),
            SpanId::from(record.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(record.parent_span_id),
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(record.name),
        start_time: time(record.start_nanos),
        end_time: time(record.end_nanos.max(record.start_nanos)),
        attributes,
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status,
        instrumentation_scope: InstrumentationScope::builder(
            crio_contract::trace::SHIM_SERVICE_NAME,
        )
        .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_ids_times_and_errors() {
        let data = span_data(SpanRecord {
            trace_id: 0xabc,
            span_id: 0x12,
            parent_span_id: 0x34,
            name: "runc create".into(),
            start_nanos: 1_000,
            end_nanos: 500,
            attributes: vec![(ERROR_ATTRIBUTE.into(), "exit status 1".into())],
        });
        assert_eq!(data.span_context.trace_id(), TraceId::from(0xabc_u128));
        assert_eq!(data.parent_span_id, SpanId::from(0x34_u64));
        assert_eq!(data.name, "runc create");
        assert_eq!(data.end_time, data.start_time);
        assert_eq!(data.status, Status::error("exit status 1"));
    }
}
