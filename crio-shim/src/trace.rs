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
    /// The call's own span, parent of the runtime commands' spans.
    span: TraceParent,
    done: Mutex<Vec<SpanRecord>>,
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
pub async fn call<T, E: std::fmt::Display>(
    ctx: &TtrpcContext,
    events: &Events,
    name: &str,
    id: &str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Some(parent) = parent_of(ctx) else {
        return work.await;
    };
    let start = now_nanos();
    let span = TraceParent {
        span_id: new_span_id(),
        ..parent
    };
    let recorder = Arc::new(Recorder {
        span,
        done: Mutex::default(),
    });
    let result = CURRENT.scope(recorder.clone(), work).await;
    let mut call = record(
        &parent,
        format!("shim {name}"),
        start,
        result.as_ref().err().map(ToString::to_string),
    );
    call.span_id = span.span_id;
    call.attributes
        .push(("container.id".to_string(), id.to_string()));
    let mut spans = std::mem::take(&mut *recorder.done.lock());
    spans.push(call);
    events.spans(&spans).await;
    result
}

/// Runs runtime command `name` as a child span of the task call being
/// served (when it is traced).
pub async fn step<T, E: std::fmt::Display>(
    name: impl FnOnce() -> String,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Ok(recorder) = CURRENT.try_with(Arc::clone) else {
        return work.await;
    };
    let start = now_nanos();
    let result = work.await;
    let error = result.as_ref().err().map(ToString::to_string);
    let span = record(&recorder.span, name(), start, error);
    recorder.done.lock().push(span);
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

    fn span(&self, command: &str) -> impl FnOnce() -> String {
        let name = format!("{} {command}", self.name);
        move || name
    }
}

#[async_trait::async_trait]
impl<R: Runtime> Runtime for Traced<R> {
    async fn watch_exits(&self) -> Result<Box<dyn ExitWatch>> {
        self.inner.watch_exits().await
    }

    async fn create(&self, args: &CreateArgs<'_>, stdio: Stdio) -> Result<()> {
        step(self.span("create"), self.inner.create(args, stdio)).await
    }

    async fn start(&self, id: &str, exited: watch::Receiver<Option<Exit>>) -> Result<()> {
        step(self.span("start"), self.inner.start(id, exited)).await
    }

    async fn exec(&self, id: &str, process: &Path, pid_file: &Path, stdio: Stdio) -> Result<()> {
        let run = self.inner.exec(id, process, pid_file, stdio);
        step(self.span("exec"), run).await
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        step(self.span("kill"), self.inner.kill(id, signal, all)).await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        step(self.span("delete"), self.inner.delete(id)).await
    }

    async fn ps(&self, id: &str) -> Result<Option<Vec<u32>>> {
        self.inner.ps(id).await
    }

    async fn pause(&self, id: &str, paused: bool) -> Result<()> {
        let command = if paused { "pause" } else { "resume" };
        step(self.span(command), self.inner.pause(id, paused)).await
    }

    async fn update(&self, id: &str, resources: &Path) -> Result<()> {
        step(self.span("update"), self.inner.update(id, resources)).await
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
        let out: Result<u8, String> = step(|| unreachable!("not named"), async { Ok(7) }).await;
        assert_eq!(out, Ok(7));
    }

    #[tokio::test]
    async fn steps_nest_under_the_call() {
        let parent = TraceParent {
            trace_id: 5,
            span_id: 6,
            sampled: true,
        };
        let recorder = Arc::new(Recorder {
            span: TraceParent {
                span_id: 9,
                ..parent
            },
            done: Mutex::default(),
        });
        let failed: Result<(), String> = CURRENT
            .scope(
                recorder.clone(),
                step(|| "runc create".into(), async {
                    Err("exit status 1".into())
                }),
            )
            .await;
        assert!(failed.is_err());
        let done = recorder.done.lock();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].trace_id, done[0].parent_span_id), (5, 9));
        assert_eq!(done[0].name, "runc create");
        assert_eq!(
            done[0].attributes,
            [(ERROR_ATTRIBUTE.to_string(), "exit status 1".to_string())]
        );
    }
}
