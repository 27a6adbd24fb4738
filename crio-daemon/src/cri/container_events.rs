//! GetContainerEvents (the kubelet's Evented PLEG): every container and pod
//! event from the moment the call is made, in the order they happened, each
//! with its pod's status and the statuses of the pod's containers as the
//! daemon's memory holds them when it is sent (no shim is asked). A pod's
//! events carry the pod's ID, standing for its sandbox, as the kubelet
//! expects. A client that falls [`crate::events::BUFFER`] events behind gets
//! Aborted and is dropped: it reconnects and lists again.

use std::pin::Pin;
use std::sync::Arc;

use crio_api::cri::{ContainerEventResponse, ContainerEventType};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;

use super::{State, container_status, sandbox_status};
use crate::container::ContainerEvent;
use crate::error::Error;
use crate::events::EventKind;

/// The stream of one client's events.
pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, tonic::Status>> + Send>>;

/// The events from now on, for one client.
pub fn subscribe(st: Arc<State>) -> EventStream {
    let events = st.containers.subscribe_events();
    Box::pin(futures_util::stream::unfold(
        Some((st, events)),
        |next| async move {
            let (st, mut events) = next?;
            match events.recv().await {
                Ok(event) => {
                    let sent = response(&st, &event);
                    Some((Ok(sent), Some((st, events))))
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a container events client fell behind: dropped");
                    crate::metrics::global().events_dropped(missed);
                    let e = Error::Aborted(format!(
                        "container events: this client fell {missed} events behind; reconnect and list"
                    ));
                    Some((Err(e.into()), None))
                }
                // The daemon stops.
                Err(RecvError::Closed) => None,
            }
        },
    ))
}

fn event_type(kind: EventKind) -> ContainerEventType {
    match kind {
        EventKind::Created => ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => ContainerEventType::ContainerDeletedEvent,
    }
}

/// An event as the CRI has it: the pod's status (as it was, for a pod gone
/// since) and its containers' statuses, from memory.
fn response(st: &State, event: &ContainerEvent) -> ContainerEventResponse {
    let subject = &event.detail;
    let pod = st.pods.get(&subject.pod_id).or_else(|| subject.pod.clone());
    let containers = st.containers.of_pod(&subject.pod_id);
    ContainerEventResponse {
        container_id: event.id.clone(),
        container_event_type: event_type(event.kind) as i32,
        created_at: event.at,
        pod_sandbox_status: pod.as_ref().map(sandbox_status::status),
        containers_statuses: containers
            .iter()
            .filter_map(|r| container_status::status(r, None).status)
            .collect(),
    }
}
