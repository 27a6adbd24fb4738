//! Task events (TaskStart, TaskExit, TaskOOM, TaskPaused, TaskResumed) sent
//! to the daemon's event endpoint (`TTRPC_ADDRESS`). Without a listener an
//! event is dropped: the bundle's exit and oom files are the record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use containerd_shim::protos::events::task::{
    TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::EventsClient;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc;

use crio_contract::trace::{SPANS_TOPIC, SPANS_TYPE, SpanRecord, TraceParent};
use parking_lot::Mutex;

use crate::runtime::Exit;

/// How long an event may take to be delivered.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Where events go.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Delivers one event, or drops it.
    async fn forward(&self, req: ForwardRequest);
}

/// The daemon's event endpoint, connected on first use and again after a
/// failure.
#[derive(Default)]
pub struct Daemon {
    client: tokio::sync::Mutex<Option<EventsClient>>,
}

#[async_trait]
impl EventSink for Daemon {
    async fn forward(&self, req: ForwardRequest) {
        let send = async {
            let mut client = self.client.lock().await;
            if client.is_none() {
                let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
                let address = if address.contains("://") {
                    address
                } else {
                    format!("unix://{address}")
                };
                let connected = ttrpc::asynchronous::Client::connect(&address).await.ok()?;
                *client = Some(EventsClient::new(connected));
            }
            let ctx = ttrpc::context::with_timeout(SEND_TIMEOUT.as_nanos() as i64);
            if client.as_ref()?.forward(ctx, &req).await.is_err() {
                // Reconnect next time.
                *client = None;
            }
            Some(())
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, send).await;
    }
}

/// The events of one shim's namespace.
pub struct Events {
    namespace: String,
    sink: Arc<dyn EventSink>,
    /// The trace context each traced container was started under: its
    /// exit and OOM kills are reported there.
    traced: Mutex<HashMap<String, TraceParent>>,
}

impl Events {
    /// Events of `namespace` delivered to `sink`.
    pub fn new(namespace: String, sink: Arc<dyn EventSink>) -> Self {
        Self {
            namespace,
            sink,
            traced: Mutex::default(),
        }
    }

    /// Publishes `event` (protobuf type `containerd.events.<kind>`) on
    /// `topic`. The message is packed by name, which keeps protobuf's
    /// reflection tables out of the shim's memory.
    async fn publish(&self, topic: &str, kind: &str, event: &dyn MessageDyn) {
        let Ok(value) = event.write_to_bytes_dyn() else {
            return;
        };
        self.publish_packed(topic, format!("containerd.events.{kind}"), value)
            .await;
    }

    /// Publishes a payload of type `type_url` on `topic`.
    async fn publish_packed(&self, topic: &str, type_url: String, value: Vec<u8>) {
        let mut any = Any::new();
        any.type_url = type_url;
        any.value = value;
        let mut envelope = Envelope::new();
        envelope.timestamp = timestamp(now_nanos());
        envelope.namespace = self.namespace.clone();
        envelope.topic = topic.to_string();
        envelope.event = MessageField::some(any);
        let req = ForwardRequest {
            envelope: MessageField::some(envelope),
            ..Default::default()
        };
        self.sink.forward(req).await;
    }

    /// The container's init started.
    pub async fn started(&self, id: &str, pid: u32) {
        let event = TaskStart {
            container_id: id.to_string(),
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_START_EVENT_TOPIC, "TaskStart", &event)
            .await;
    }

    /// The container's init exited (after the exit file was written).
    pub async fn exited(&self, id: &str, pid: u32, exit: Exit) {
        let event = TaskExit {
            container_id: id.to_string(),
            id: id.to_string(),
            pid,
            exit_status: exit.0,
            exited_at: timestamp(exit.1),
            ..Default::default()
        };
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, "TaskExit", &event)
            .await;
        let parent = self.traced.lock().remove(id);
        if let Some(parent) = parent {
            // From the reaping to the report, exit file written on the way.
            let span = crate::trace::record(&parent, "exit reported".into(), exit.1, None);
            self.spans(&[span]).await;
        }
    }

    /// A process of the container was OOM-killed.
    pub async fn oom(&self, id: &str) {
        let start = now_nanos();
        let event = TaskOOM {
            container_id: id.to_string(),
            ..Default::default()
        };
        self.publish(topics::TASK_OOM_EVENT_TOPIC, "TaskOOM", &event)
            .await;
        let parent = self.traced.lock().get(id).copied();
        if let Some(parent) = parent {
            let span = crate::trace::record(&parent, "oom reported".into(), start, None);
            self.spans(&[span]).await;
        }
    }

    /// Reports the exit and OOM kills of container `id` under `parent`.
    pub fn follow(&self, id: &str, parent: TraceParent) {
        self.traced.lock().insert(id.to_string(), parent);
    }

    /// Sends finished spans to the daemon, which exports them.
    pub async fn spans(&self, spans: &[SpanRecord]) {
        if spans.is_empty() {
            return;
        }
        let payload = crio_contract::trace::encode_spans(spans);
        self.publish_packed(SPANS_TOPIC, SPANS_TYPE.to_string(), payload)
            .await;
    }

    /// The container was frozen (`paused`) or thawed.
    pub async fn paused(&self, id: &str, paused: bool) {
        if paused {
            let event = TaskPaused {
                container_id: id.to_string(),
                ..Default::default()
            };
            self.publish(topics::TASK_PAUSED_EVENT_TOPIC, "TaskPaused", &event)
                .await;
        } else {
            let event = TaskResumed {
                container_id: id.to_string(),
                ..Default::default()
            };
            self.publish(topics::TASK_RESUMED_EVENT_TOPIC, "TaskResumed", &event)
                .await;
        }
    }
}

/// Nanoseconds since the epoch as a protobuf timestamp.
pub fn timestamp(nanos: i64) -> MessageField<Timestamp> {
    let mut ts = Timestamp::new();
    ts.seconds = nanos.div_euclid(1_000_000_000);
    ts.nanos = nanos.rem_euclid(1_000_000_000) as i32;
    MessageField::some(ts)
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
