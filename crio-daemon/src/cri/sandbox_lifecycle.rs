//! RunPodSandbox, StopPodSandbox, RemovePodSandbox.

use crio_api::cri::{
    RemovePodSandboxRequest, RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse,
    StopPodSandboxRequest, StopPodSandboxResponse,
};

use super::{Answer, State, pod_id};

/// RunPodSandbox: the pod, with its infra container when it needs one.
pub async fn run(st: &State, req: RunPodSandboxRequest) -> Answer<RunPodSandboxResponse> {
    let config = req
        .config
        .ok_or_else(|| crio_api::status::invalid_field("config", "is required"))?;
    // An unknown handler is refused by the pods, naming it.
    if let Some(handler) = st.handlers.get(&req.runtime_handler) {
        crate::userns::check_handler(&config, &handler.name, Some(&handler.features))?;
    }
    let id = st.sandboxes.run(config, req.runtime_handler).await?;
    Ok(RunPodSandboxResponse { pod_sandbox_id: id })
}

/// StopPodSandbox: its containers, then the pod.
pub async fn stop(st: &State, req: &StopPodSandboxRequest) -> Answer<StopPodSandboxResponse> {
    st.sandboxes.stop(pod_id(&req.pod_sandbox_id)?).await?;
    Ok(StopPodSandboxResponse {})
}

/// RemovePodSandbox: its containers, its shim, then the pod.
pub async fn remove(st: &State, req: &RemovePodSandboxRequest) -> Answer<RemovePodSandboxResponse> {
    st.sandboxes.remove(pod_id(&req.pod_sandbox_id)?).await?;
    Ok(RemovePodSandboxResponse {})
}
