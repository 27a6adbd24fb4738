//! CreateContainer, StartContainer, StopContainer, RemoveContainer.

use crio_api::cri::{
    CheckpointContainerRequest, CheckpointContainerResponse, CreateContainerRequest,
    CreateContainerResponse, RemoveContainerRequest, RemoveContainerResponse,
    StartContainerRequest, StartContainerResponse, StopContainerRequest, StopContainerResponse,
};
use std::sync::Arc;

use super::{Answer, State, container_id, pod_id};

/// CreateContainer, in a task of its own: a kubelet giving up does not cut
/// it short.
pub async fn create(
    st: &Arc<State>,
    req: CreateContainerRequest,
) -> Answer<CreateContainerResponse> {
    pod_id(&req.pod_sandbox_id)?;
    let config = req
        .config
        .ok_or_else(|| crio_api::status::invalid_field("config", "is required"))?;
    let containers = st.containers.clone();
    let creating = async move { containers.create(&req.pod_sandbox_id, config).await };
    let id = tokio::spawn(tracing::Instrument::in_current_span(creating))
        .await
        .map_err(|e| tonic::Status::internal(format!("CreateContainer: {e}")))??;
    Ok(CreateContainerResponse { container_id: id })
}

/// StartContainer.
pub async fn start(st: &State, req: &StartContainerRequest) -> Answer<StartContainerResponse> {
    st.containers
        .start(container_id(&req.container_id)?)
        .await?;
    Ok(StartContainerResponse {})
}

/// StopContainer.
pub async fn stop(st: &State, req: &StopContainerRequest) -> Answer<StopContainerResponse> {
    st.containers
        .stop(container_id(&req.container_id)?, req.timeout)
        .await?;
    Ok(StopContainerResponse {})
}

/// RemoveContainer.
pub async fn remove(st: &State, req: &RemoveContainerRequest) -> Answer<RemoveContainerResponse> {
    st.containers
        .remove(container_id(&req.container_id)?)
        .await?;
    Ok(RemoveContainerResponse {})
}

/// CheckpointContainer: FailedPrecondition naming what the host lacks.
pub fn checkpoint(
    st: &State,
    req: &CheckpointContainerRequest,
) -> Answer<CheckpointContainerResponse> {
    let path_env = std::env::var("PATH").unwrap_or_default();
    st.containers
        .checkpoint(container_id(&req.container_id)?, &path_env)?;
    Ok(CheckpointContainerResponse {})
}
