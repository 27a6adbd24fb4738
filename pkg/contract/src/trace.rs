//! Trace context between the daemon and its shims. The daemon puts the W3C
//! `traceparent` of its call in the ttrpc request's metadata; a shim that
//! gets a sampled one records its own spans under it and sends them back in
//! a task event ([`SPANS_TOPIC`]), which the daemon exports over OTLP under
//! the shim's service name. So the shim links no OTLP or gRPC stack, and
//! records nothing when tracing is off (no traceparent arrives).

/// The ttrpc metadata key (and gRPC header) of the trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The event topic of a shim's finished spans.
pub const SPANS_TOPIC: &str = "/crio/trace/spans";
/// The type URL of that event's payload ([`encode_spans`]).
pub const SPANS_TYPE: &str = "crio.trace.Spans";
/// `service.name` of the shim's spans.
pub const SHIM_SERVICE_NAME: &str = "containerd-shim-crio-v2";
/// The attribute that marks a failed span, with its message.
pub const ERROR_ATTRIBUTE: &str = "error";

/// A W3C trace context: `00-TRACEID-SPANID-FLAGS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace, never zero.
    pub trace_id: u128,
    /// The parent span, never zero.
    pub span_id: u64,
    /// Whether the trace is sampled (flag 01).
    pub sampled: bool,
}

impl TraceParent {
    /// The context in a `traceparent` value; `None` when it is not one
    /// (unknown version ff, wrong lengths, zero IDs).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if flags.len() != 2 || (version == "00" && parts.next().is_some()) {
            return None;
        }
        u8::from_str_radix(version, 16).ok()?;
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` value (version 00).
    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// One finished span of a shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// Its trace.
    pub trace_id: u128,
    /// Its own ID.
    pub span_id: u64,
    /// Its parent (a daemon's span or another of the shim's).
    pub parent_span_id: u64,
    /// What it did (`runc create`).
    pub name: String,
    /// When it began and ended, nanoseconds since the epoch.
    pub start_nanos: i64,
    /// See `start_nanos`.
    pub end_nanos: i64,
    /// Its attributes, in order; [`ERROR_ATTRIBUTE`] marks a failure.
    pub attributes: Vec<(String, String)>,
}

/// Spans as the event's payload: one a line, fields separated by tabs
/// (IDs in hex, times in decimal, then the name and `key=value`
/// attributes, with `\`, tab and newline escaped).
pub fn encode_spans(spans: &[SpanRecord]) -> Vec<u8> {
    let mut out = String::new();
    for s in spans {
        out.push_str(&format!(
            "{:032x}\t{:016x}\t{:016x}\t{}\t{}\t{}",
            s.trace_id,
            s.span_id,
            s.parent_span_id,
            s.start_nanos,
            s.end_nanos,
            escape(&s.name)
        ));
        for (k, v) in &s.attributes {
            out.push('\t');
            out.push_str(&escape(k));
            out.push('=');
            out.push_str(&escape(v));
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// The spans of a payload; lines that are not spans are skipped (the
/// payload comes from a process the daemon does not trust blindly).
pub fn decode_spans(payload: &[u8]) -> Vec<SpanRecord> {
    let text = String::from_utf8_lossy(payload);
    text.lines().filter_map(decode_span).collect()
}

fn decode_span(line: &str) -> Option<SpanRecord> {
    let mut fields = line.split('\t');
    let trace_id = u128::from_str_radix(fields.next()?, 16).ok()?;
    let span_id = u64::from_str_radix(fields.next()?, 16).ok()?;
    let parent_span_id = u64::from_str_radix(fields.next()?, 16).ok()?;
    let start_nanos = fields.next()?.parse().ok()?;
    let end_nanos = fields.next()?.parse().ok()?;
    let name = unescape(fields.next()?);
    let attributes = fields
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (unescape(k), unescape(v))
        })
        .collect();
    (trace_id != 0 && span_id != 0).then_some(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        name,
        start_nanos,
        end_nanos,
        attributes,
    })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '=' => out.push_str("\\e"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('e') => out.push('='),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).unwrap();
        assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(tp.span_id, 0x00f067aa0ba902b7);
        assert!(tp.sampled);
        assert_eq!(tp.header(), text);
        let unsampled = TraceParent::parse(&text.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn bad_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-xbf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn spans_round_trip_with_odd_text() {
        let spans = vec![
            SpanRecord {
                trace_id: 7,
                span_id: 8,
                parent_span_id: 9,
                name: "runc create".into(),
                start_nanos: 100,
                end_nanos: 250,
                attributes: vec![
                    ("container.id".into(), "abc".into()),
                    (ERROR_ATTRIBUTE.into(), "a=b\tc\\d\ne".into()),
                ],
            },
            SpanRecord {
                trace_id: 7,
                span_id: 10,
                parent_span_id: 8,
                name: "x".into(),
                start_nanos: 1,
                end_nanos: 2,
                attributes: vec![],
            },
        ];
        assert_eq!(decode_spans(&encode_spans(&spans)), spans);
        let mut junk = encode_spans(&spans);
        junk.extend_from_slice(b"not a span\n0\t1\t2\t3\t4\tzero trace\n");
        assert_eq!(decode_spans(&junk), spans);
    }
}
