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
    let handler = match req.runtime_handler.as_str() {
        "" => st.config.runtime.default_runtime.as_str(),
        named => named,
    };
    crate::userns::check_handler(&config, handler, st.handler_features.get(handler))?;
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
