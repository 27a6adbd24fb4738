//! The events endpoint the pods' shims publish to (`TTRPC_ADDRESS`): the
//! events the daemon acts on (a process exited, an OOM kill) are handed to
//! the container core through a bounded queue; the others are logged.

use crio_api::task::events::task::{TaskExit, TaskOOM};
use crio_api::task::protobuf::Message;
use crio_api::task::{self, Events, topics, ttrpc};
use tokio::sync::mpsc;

/// How many shim events may wait for the container core; beyond that a
/// shim's publish waits (and gives up after its own deadline: the bundle's
/// files still hold the exit).
pub(super) const QUEUE: usize = 1024;

/// What a pod's shim reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimEvent {
    /// A process exited: the container's init when `exec_id` is the
    /// container's ID, else one of its execs.
    Exit {
        /// The container.
        container_id: String,
        /// The process (the container's ID for its init).
        exec_id: String,
        /// Its exit status.
        status: u32,
        /// When, CRI nanoseconds.
        at: i64,
    },
    /// A process of the container was killed for exceeding its memory limit.
    Oom {
        /// The container.
        container_id: String,
    },
}

impl ShimEvent {
    /// The event a shim's envelope carries, when the daemon acts on it.
    pub fn parse(req: &task::ForwardRequest) -> Option<Self> {
        let envelope = req.envelope.as_ref()?;
        let payload = &envelope.event.as_ref()?.value;
        match envelope.topic.as_str() {
            topics::TASK_EXIT_EVENT_TOPIC => {
                let exit = TaskExit::parse_from_bytes(payload).ok()?;
                Some(Self::Exit {
                    at: exit
                        .exited_at
                        .as_ref()
                        .map(crio_api::time::timestamp_to_nanos)
                        .unwrap_or_else(crio_api::time::now_nanos),
                    container_id: exit.container_id,
                    exec_id: exit.id,
                    status: exit.exit_status,
                })
            }
            topics::TASK_OOM_EVENT_TOPIC => {
                let oom = TaskOOM::parse_from_bytes(payload).ok()?;
                Some(Self::Oom {
                    container_id: oom.container_id,
                })
            }
            _ => None,
        }
    }
}

/// The endpoint: each event the daemon acts on goes to the queue.
pub(super) struct Endpoint(pub(super) mpsc::Sender<ShimEvent>);

#[async_trait::async_trait]
impl Events for Endpoint {
    async fn forward(
        &self,
        _ctx: &ttrpc::asynchronous::TtrpcContext,
        req: task::ForwardRequest,
    ) -> ttrpc::Result<task::Empty> {
        match ShimEvent::parse(&req) {
            Some(event) => {
                tracing::debug!(?event, "shim event");
                // Closed only when the daemon stops.
                let _ = self.0.send(event).await;
            }
            None => match req.envelope.as_ref() {
                Some(e) if e.topic == crio_contract::trace::SPANS_TOPIC => {
                    if let Some(spans) = e.event.as_ref() {
                        crate::telemetry::export_shim_spans(&spans.value);
                    }
                }
                other => tracing::debug!(topic = other.map(|e| e.topic.as_str()), "shim event"),
            },
        }
        Ok(task::Empty::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crio_api::task::protobuf::MessageField;
    use crio_api::task::protobuf::well_known_types::any::Any;

    /// A request as the shim sends it (the payload packed by type name).
    fn forwarded(
        topic: &str,
        kind: &str,
        event: &dyn crio_api::task::protobuf::MessageDyn,
    ) -> task::ForwardRequest {
        let mut any = Any::new();
        any.type_url = format!("containerd.events.{kind}");
        any.value = event.write_to_bytes_dyn().unwrap();
        let mut req = task::ForwardRequest::new();
        let envelope = req.envelope.mut_or_insert_default();
        envelope.topic = topic.into();
        envelope.event = MessageField::some(any);
        req
    }

    #[test]
    fn exits_and_ooms_are_read_others_ignored() {
        let exit = TaskExit {
            container_id: "c1".into(),
            id: "e1".into(),
            exit_status: 3,
            exited_at: MessageField::some(crio_api::time::nanos_to_timestamp(1_500_000_000)),
            ..Default::default()
        };
        assert_eq!(
            ShimEvent::parse(&forwarded(topics::TASK_EXIT_EVENT_TOPIC, "TaskExit", &exit)),
            Some(ShimEvent::Exit {
                container_id: "c1".into(),
                exec_id: "e1".into(),
                status: 3,
                at: 1_500_000_000,
            })
        );
        let oom = TaskOOM {
            container_id: "c2".into(),
            ..Default::default()
        };
        assert_eq!(
            ShimEvent::parse(&forwarded(topics::TASK_OOM_EVENT_TOPIC, "TaskOOM", &oom)),
            Some(ShimEvent::Oom {
                container_id: "c2".into()
            })
        );
        assert_eq!(
            ShimEvent::parse(&forwarded(topics::TASK_START_EVENT_TOPIC, "TaskOOM", &oom)),
            None
        );
        let mut garbled = forwarded(topics::TASK_EXIT_EVENT_TOPIC, "TaskExit", &exit);
        garbled
            .envelope
            .mut_or_insert_default()
            .event
            .mut_or_insert_default()
            .value = vec![0xff; 3];
        assert_eq!(ShimEvent::parse(&garbled), None);
        assert_eq!(ShimEvent::parse(&task::ForwardRequest::new()), None);
    }
}
