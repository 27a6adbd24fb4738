//! `events`: container and pod events as they happen (GetContainerEvents),
//! like `crictl events`; runs until interrupted or the daemon ends the stream.

use anyhow::Result;
use crio_api::client::CriClient;
use crio_api::cri::{ContainerEventResponse, ContainerEventType, GetEventsRequest};

use super::rpc_error;
use crate::output::{Format, render};

/// Flags of `events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format: one document per event, or one line (time, event, ID, pod).
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: Format,
}

/// Prints each event as it arrives.
pub async fn run(client: &mut CriClient, args: &Args) -> Result<()> {
    let mut events = client
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .map_err(|s| rpc_error("GetContainerEvents", s))?
        .into_inner();
    while let Some(event) = events
        .message()
        .await
        .map_err(|s| rpc_error("GetContainerEvents", s))?
    {
        match args.output {
            Format::Table => println!("{}", line(&event)),
            format => println!("{}", render(&event, format)?),
        }
    }
    Ok(())
}

/// `TIME  EVENT  ID  POD`: the event's time (RFC 3339), its type as the
/// CRI names it, the container (or pod) and the pod.
fn line(e: &ContainerEventResponse) -> String {
    let kind =
        ContainerEventType::try_from(e.container_event_type).map_or("UNKNOWN", |k| k.as_str_name());
    let pod = e.pod_sandbox_status.as_ref().map_or("", |p| p.id.as_str());
    let nanos = std::time::Duration::from_nanos(u64::try_from(e.created_at).unwrap_or(0));
    let at = crio_contract::time::format_rfc3339(std::time::UNIX_EPOCH + nanos);
    format!("{at}  {kind}  {}  {pod}", e.container_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crio_api::cri::PodSandboxStatus;

    #[test]
    fn a_line_per_event() {
        let e = ContainerEventResponse {
            container_id: "c1".into(),
            container_event_type: ContainerEventType::ContainerStoppedEvent as i32,
            created_at: 1_000_000_000,
            pod_sandbox_status: Some(PodSandboxStatus {
                id: "p1".into(),
                ..Default::default()
            }),
            containers_statuses: Vec::new(),
        };
        assert_eq!(
            line(&e),
            "1970-01-01T00:00:01.000000000Z  CONTAINER_STOPPED_EVENT  c1  p1"
        );
    }
}
