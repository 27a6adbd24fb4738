//! The shim's spans. A task call whose ttrpc metadata carries a sampled
//! `traceparent` (the daemon sends one only when tracing is on) gets a span
//! of its own, and each runtime command it runs a child span; when the
//! call ends they go to the daemon in one event, which exports them (see
//! `crio_contract::trace`). Without a traceparent nothing is recorded.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use crio_contract::trace::{ERROR_ATTRIBUTE, SpanRecord, TRACEPARENT, TraceParent};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::Result;
use crate::events::{Events, now_nanos};
use crate::runtime::{CreateArgs, Exit, ExitWatch, Runtime, Stdio};

tokio::task_local! {
    /// The span of the task call being served, and the spans finished under it.
    static CURRENT: Arc<Recorder>;
}

/// The spans of one traced task call.
pub struct Recorder {
    /// The caller's span.
    parent: TraceParent,
    /// The call's own span, parent of the runtime commands' spans.
    span: TraceParent,
    start: i64,
    done: Mutex<Vec<SpanRecord>>,
}

impl Recorder {
    /// A recorder for a call under `parent`, begun now.
    fn begin(parent: TraceParent) -> Arc<Self> {
        Arc::new(Self {
            parent,
            span: TraceParent {
                span_id: new_span_id(),
                ..parent
            },
            start: now_nanos(),
            done: Mutex::default(),
        })
    }

    /// Ends the call's span and sends it with those under it. Not generic:
    /// one copy in the shim's text, whatever the call.
    async fn finish(&self, events: &Events, name: &str, id: &str, error: Option<String>) {
        let mut call = record(&self.parent, format!("shim {name}"), self.start, error);
        call.span_id = self.span.span_id;
        call.attributes
            .push(("container.id".to_string(), id.to_string()));
        let mut spans = std::mem::take(&mut *self.done.lock());
        spans.push(call);
        events.spans(&spans).await;
    }

    /// Records runtime command `name`, begun at `start`, under the call.
    fn add_step(&self, name: String, start: i64, error: Option<String>) {
        let span = record(&self.span, name, start, error);
        self.done.lock().push(span);
    }
}

/// The sampled trace context of a task call, if the daemon sent one.
pub fn parent_of(ctx: &TtrpcContext) -> Option<TraceParent> {
    ctx.metadata
        .get(TRACEPARENT)?
        .iter()
        .find_map(|v| TraceParent::parse(v))
        .filter(|p| p.sampled)
}

/// A new span ID: random (a hash with a fresh random key), never zero.
pub fn new_span_id() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.write_i64(now_nanos());
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// A finished span under `parent`.
pub fn record(parent: &TraceParent, name: String, start: i64, error: Option<String>) -> SpanRecord {
    SpanRecord {
        trace_id: parent.trace_id,
        span_id: new_span_id(),
        parent_span_id: parent.span_id,
        name,
        start_nanos: start,
        end_nanos: now_nanos(),
        attributes: error
            .map(|e| (ERROR_ATTRIBUTE.to_string(), e))
            .into_iter()
            .collect(),
    }
}

/// Serves task call `name` for container `id` under the caller's trace
/// context, if any: a span for the call, the runtime's spans under it,
/// all sent to the daemon when it ends.
pub async fn call<T>(
    ctx: &TtrpcContext,
    events: &Events,
    name: &str,
    id: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(parent) = parent_of(ctx) else {
        return work.await;
    };
    let recorder = Recorder::begin(parent);
    let result = CURRENT.scope(recorder.clone(), work).await;
    let error = result.as_ref().err().map(ToString::to_string);
    recorder.finish(events, name, id, error).await;
    result
}

/// Runs command `command` of `runtime` as a child span of the task call
/// being served (when it is traced).
pub async fn step<T>(
    runtime: &str,
    command: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Ok(recorder) = CURRENT.try_with(Arc::clone) else {
        return work.await;
    };
    let start = now_nanos();
    let result = work.await;
    let error = result.as_ref().err().map(ToString::to_string);
    recorder.add_step(format!("{runtime} {command}"), start, error);
    result
}

/// The runtime with a span for each of its commands, named after its
/// binary (`runc create`).
pub struct Traced<R> {
    inner: R,
    name: String,
}

impl<R> Traced<R> {
    /// `inner`, whose binary is called `name`.
    pub fn new(inner: R, name: String) -> Self {
        Self { inner, name }
    }
}

#[async_trait::async_trait]
impl<R: Runtime> Runtime for Traced<R> {
    async fn watch_exits(&self) -> Result<Box<dyn ExitWatch>> {
        self.inner.watch_exits().await
    }

    async fn create(&self, args: &CreateArgs<'_>, stdio: Stdio) -> Result<()> {
        step(&self.name, "create", self.inner.create(args, stdio)).await
    }

    async fn start(&self, id: &str, exited: watch::Receiver<Option<Exit>>) -> Result<()> {
        step(&self.name, "start", self.inner.start(id, exited)).await
    }

    async fn exec(&self, id: &str, process: &Path, pid_file: &Path, stdio: Stdio) -> Result<()> {
        let run = self.inner.exec(id, process, pid_file, stdio);
        step(&self.name, "exec", run).await
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        step(&self.name, "kill", self.inner.kill(id, signal, all)).await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        step(&self.name, "delete", self.inner.delete(id)).await
    }

    async fn ps(&self, id: &str) -> Result<Option<Vec<u32>>> {
        self.inner.ps(id).await
    }

    async fn pause(&self, id: &str, paused: bool) -> Result<()> {
        let command = if paused { "pause" } else { "resume" };
        step(&self.name, command, self.inner.pause(id, paused)).await
    }

    async fn update(&self, id: &str, resources: &Path) -> Result<()> {
        step(&self.name, "update", self.inner.update(id, resources)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_differ_and_are_not_zero() {
        let ids: std::collections::HashSet<u64> = (0..1000).map(|_| new_span_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&0));
    }

    #[tokio::test]
    async fn steps_outside_a_traced_call_record_nothing() {
        let out = step("runc", "create", async { Ok(7) }).await;
        assert_eq!(out.unwrap(), 7);
    }

    #[tokio::test]
    async fn steps_nest_under_the_call() {
        let parent = TraceParent {
            trace_id: 5,
            span_id: 6,
            sampled: true,
        };
        let recorder = Recorder::begin(parent);
        let failing = async { Err::<(), _>(crate::error::ShimError::NoTerminal) };
        let failed = CURRENT
            .scope(recorder.clone(), step("runc", "create", failing))
            .await;
        assert!(failed.is_err());
        let done = recorder.done.lock();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].trace_id, 5);
        assert_eq!(done[0].parent_span_id, recorder.span.span_id);
        assert_ne!(recorder.span.span_id, 6);
        assert_eq!(done[0].name, "runc create");
        let error = crate::error::ShimError::NoTerminal.to_string();
        assert_eq!(done[0].attributes, [(ERROR_ATTRIBUTE.to_string(), error)]);
    }
}
