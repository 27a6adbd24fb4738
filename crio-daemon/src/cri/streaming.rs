//! ExecSync, and the calls that hand out a streaming server URL: Exec,
//! Attach, PortForward.

use crio_api::cri::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, ExecSyncRequest, ExecSyncResponse,
    PortForwardRequest, PortForwardResponse,
};

use super::{Answer, State, container_id, pod_id};

/// A URL on the streaming server for `request`.
fn stream_url(st: &State, request: crio_streaming::Request) -> Answer<String> {
    let server = st
        .streaming
        .get()
        .ok_or_else(|| tonic::Status::unavailable("the streaming server is not running"))?;
    server
        .url(request)
        .map_err(|e| tonic::Status::resource_exhausted(e.to_string()))
}

/// ExecSync.
pub async fn exec_sync(st: &State, req: ExecSyncRequest) -> Answer<ExecSyncResponse> {
    let (stdout, stderr, exit_code) = st
        .containers
        .exec_sync(container_id(&req.container_id)?, req.cmd, req.timeout)
        .await?;
    Ok(ExecSyncResponse {
        stdout,
        stderr,
        exit_code,
    })
}

/// Exec: a URL for the exec session, once the container runs.
pub async fn exec(st: &State, req: ExecRequest) -> Answer<ExecResponse> {
    container_id(&req.container_id)?;
    if req.cmd.is_empty() {
        return Err(crio_api::status::invalid_field("cmd", "must not be empty"));
    }
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(crio_api::status::invalid_field(
            "stdin/stdout/stderr",
            "one of them must be set",
        ));
    }
    let record = st.containers.running(&req.container_id).await?;
    let url = stream_url(
        st,
        crio_streaming::Request::Exec(crio_streaming::ExecRequest {
            container_id: record.id.to_string(),
            cmd: req.cmd,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr && !req.tty,
        }),
    )?;
    Ok(ExecResponse { url })
}

/// Attach: a URL for the attach session, once the container runs.
pub async fn attach(st: &State, req: AttachRequest) -> Answer<AttachResponse> {
    let record = st
        .containers
        .running(container_id(&req.container_id)?)
        .await?;
    let url = stream_url(
        st,
        crio_streaming::Request::Attach(crio_streaming::AttachRequest {
            container_id: record.id.to_string(),
            stdin: req.stdin && record.config.stdin,
            tty: record.config.tty,
            stdout: req.stdout,
            stderr: req.stderr && !record.config.tty,
        }),
    )?;
    Ok(AttachResponse { url })
}

/// PortForward: a URL for the port-forward session of a ready pod.
pub async fn port_forward(st: &State, req: PortForwardRequest) -> Answer<PortForwardResponse> {
    let pod = st
        .pods
        .get(pod_id(&req.pod_sandbox_id)?)
        .ok_or_else(|| crio_api::status::not_found("pod sandbox", &req.pod_sandbox_id))?;
    if pod.state != crate::pod::PodState::Ready {
        return Err(tonic::Status::failed_precondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(crio_api::status::invalid_field(
            "port",
            format!("{bad} is not a port"),
        ));
    }
    let url = stream_url(
        st,
        crio_streaming::Request::PortForward(crio_streaming::PortForwardRequest {
            pod_sandbox_id: pod.id.to_string(),
            ports: req.port,
        }),
    )?;
    Ok(PortForwardResponse { url })
}
