//! ContainerStatus and ListContainers.

use crio_api::cri::{
    Container, ContainerResources, ContainerState as Cri, ContainerStatus, ContainerStatusRequest,
    ContainerStatusResponse, ContainerUser, ImageSpec, LinuxContainerUser, ListContainersRequest,
    ListContainersResponse,
};

use super::{Answer, State, container_id};
use crate::container::{ContainerRecord, ContainerState, Containers, SHIM_NOT_RESPONDING};

fn state(r: &ContainerRecord) -> i32 {
    match r.state {
        ContainerState::Created => Cri::ContainerCreated as i32,
        ContainerState::Running => Cri::ContainerRunning as i32,
        ContainerState::Exited => Cri::ContainerExited as i32,
    }
}

fn image(r: &ContainerRecord) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: r.image_ref.clone(),
        ..ImageSpec::default()
    })
}

/// ContainerStatus, from the daemon's view brought up to date with the
/// evidence on this node; never waits for the shim. A container whose
/// pod's shim does not answer keeps its last known state, and the reason
/// and message say so.
pub fn container_status(
    st: &State,
    req: &ContainerStatusRequest,
) -> Answer<ContainerStatusResponse> {
    let mut record = st.containers.observe(container_id(&req.container_id)?)?;
    if record.state != ContainerState::Exited
        && let Some(trouble) = st.containers.shim_trouble(&record.pod_id)
    {
        record.reason = SHIM_NOT_RESPONDING.into();
        record.message = trouble;
    }
    let verbose = req.verbose.then(|| st.containers.verbose_info(&record));
    Ok(status(&record, verbose))
}

/// ListContainers, from memory only: exits come from the shims' events,
/// and the background watch reads the exit files every second for any
/// event that was lost.
pub fn list_containers(st: &State, req: &ListContainersRequest) -> ListContainersResponse {
    list(&st.containers, req)
}

/// The CRI status of a record; reason Completed or Error once exited;
/// `verbose`: the pid and OCI spec for the `info` map.
pub(super) fn status(
    r: &ContainerRecord,
    verbose: Option<(u32, serde_json::Value)>,
) -> ContainerStatusResponse {
    let reason = match (r.state, r.exit_code) {
        _ if !r.reason.is_empty() => &r.reason,
        (ContainerState::Exited, _) if r.oom_killed => "OOMKilled",
        (ContainerState::Exited, 0) => "Completed",
        (ContainerState::Exited, _) => "Error",
        _ => "",
    };
    let info = super::verbose_info(verbose.map(|(pid, spec)| {
        serde_json::json!({
            "id": r.id, "podId": r.pod_id, "name": r.name, "imageId": r.image_id,
            "pid": pid, "runtimeSpec": spec,
        })
    }));
    ContainerStatusResponse {
        status: Some(ContainerStatus {
            id: r.id.to_string(),
            metadata: Some(r.metadata()),
            state: state(r),
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            exit_code: r.exit_code,
            image: image(r),
            image_ref: r.image_id.clone(),
            image_id: r.image_id.clone(),
            reason: reason.into(),
            message: r.message.clone(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            mounts: r.config.mounts.clone(),
            log_path: r.log_path.clone(),
            resources: r
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.clone())
                .map(|linux| ContainerResources {
                    linux: Some(linux),
                    windows: None,
                }),
            user: r.user.as_ref().map(user),
        }),
        info,
    }
}

/// The identity of the container's process as kubelet's
/// SupplementalGroupsPolicy reports it: uid, gid, and every group the
/// process holds (the gid with the supplementary ones).
fn user(u: &crio_spec::oci::User) -> ContainerUser {
    let mut groups: Vec<i64> = std::iter::once(u.gid())
        .chain(u.additional_gids().iter().flatten().copied())
        .map(i64::from)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    ContainerUser {
        linux: Some(LinuxContainerUser {
            uid: i64::from(u.uid()),
            gid: i64::from(u.gid()),
            supplemental_groups: groups,
        }),
    }
}

/// Containers matching the filter: ID prefix, state, pod, labels.
fn list(containers: &Containers, req: &ListContainersRequest) -> ListContainersResponse {
    let f = req.filter.clone().unwrap_or_default();
    let containers = containers.filter_map(|r| {
        let wanted = (f.id.is_empty() || r.id.starts_with(&f.id))
            && (f.pod_sandbox_id.is_empty() || r.pod_id.starts_with(&f.pod_sandbox_id))
            && f.state.as_ref().is_none_or(|s| s.state == state(r))
            && super::labels_match(&f.label_selector, &r.config.labels);
        wanted.then(|| Container {
            id: r.id.to_string(),
            pod_sandbox_id: r.pod_id.to_string(),
            metadata: Some(r.metadata()),
            image: image(r),
            image_ref: r.image_id.clone(),
            image_id: r.image_id.clone(),
            state: state(r),
            created_at: r.created_at,
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
        })
    });
    ListContainersResponse { containers }
}
