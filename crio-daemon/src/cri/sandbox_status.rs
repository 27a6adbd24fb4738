//! PodSandboxStatus and ListPodSandbox.

use crio_api::cri::{
    LinuxPodSandboxStatus, ListPodSandboxRequest, ListPodSandboxResponse, Namespace, PodIp,
    PodSandbox, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
};
use crio_api::status::not_found;

use super::{Answer, pod_id};
use crate::pod::{PodRecord, PodState, Pods};

fn state(r: &PodRecord) -> i32 {
    match r.state {
        PodState::Ready => PodSandboxState::SandboxReady as i32,
        PodState::NotReady => PodSandboxState::SandboxNotready as i32,
    }
}

/// The status of one pod; NotFound for an unknown ID.
pub fn pod_sandbox_status(
    pods: &Pods,
    req: &PodSandboxStatusRequest,
) -> Answer<PodSandboxStatusResponse> {
    pod_id(&req.pod_sandbox_id)?;
    let r = pods
        .get(&req.pod_sandbox_id)
        .ok_or_else(|| not_found("pod sandbox", &req.pod_sandbox_id))?;
    let info = super::verbose_info(req.verbose.then(|| {
        serde_json::json!({
            "id": r.id,
            "name": r.name,
            "runtimeHandler": r.runtime_handler,
            "namespaces": r.namespaces,
            "runDir": pods.run_dir(&r.id),
            "cniResult": r.network.as_ref().map(|(_, result)| result),
            "config": r.config,
        })
    }));
    Ok(PodSandboxStatusResponse {
        status: Some(status(&r)),
        info,
        containers_statuses: Vec::new(),
        timestamp: crio_api::time::now_nanos(),
    })
}

/// The CRI status of a pod record.
pub(super) fn status(r: &PodRecord) -> PodSandboxStatus {
    let network = r
        .ips
        .split_first()
        .map(|(ip, more)| PodSandboxNetworkStatus {
            ip: ip.clone(),
            additional_ips: more.iter().map(|ip| PodIp { ip: ip.clone() }).collect(),
        });
    PodSandboxStatus {
        id: r.id.to_string(),
        metadata: Some(r.metadata()),
        state: state(r),
        created_at: r.created_at,
        network,
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(r.namespace_options()),
            }),
        }),
        labels: r.config.labels.clone(),
        annotations: r.config.annotations.clone(),
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// Pods matching the filter: ID prefix, state, label selector (all given
/// labels equal).
pub fn list_pod_sandbox(pods: &Pods, req: &ListPodSandboxRequest) -> ListPodSandboxResponse {
    let filter = req.filter.clone().unwrap_or_default();
    let items = pods.filter_map(|r| {
        let wanted = (filter.id.is_empty() || r.id.starts_with(&filter.id))
            && filter.state.as_ref().is_none_or(|s| s.state == state(r))
            && super::labels_match(&filter.label_selector, &r.config.labels);
        wanted.then(|| PodSandbox {
            id: r.id.to_string(),
            metadata: Some(r.metadata()),
            state: state(r),
            created_at: r.created_at,
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            runtime_handler: r.runtime_handler.clone(),
        })
    });
    ListPodSandboxResponse { items }
}
