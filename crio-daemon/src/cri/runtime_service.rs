//! The CRI RuntimeService: dispatch to the module of each RPC family.

use std::sync::Arc;

use crio_api::cri::{
    AttachRequest, AttachResponse, CheckpointContainerRequest, CheckpointContainerResponse,
    ContainerStatsRequest, ContainerStatsResponse, ContainerStatusRequest, ContainerStatusResponse,
    CreateContainerRequest, CreateContainerResponse, ExecRequest, ExecResponse, ExecSyncRequest,
    ExecSyncResponse, GetEventsRequest, ListContainerStatsRequest, ListContainerStatsResponse,
    ListContainersRequest, ListContainersResponse, ListMetricDescriptorsRequest,
    ListMetricDescriptorsResponse, ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse,
    ListPodSandboxRequest, ListPodSandboxResponse, ListPodSandboxStatsRequest,
    ListPodSandboxStatsResponse, PodSandboxStatsRequest, PodSandboxStatsResponse,
    PodSandboxStatusRequest, PodSandboxStatusResponse, PortForwardRequest, PortForwardResponse,
    RemoveContainerRequest, RemoveContainerResponse, RemovePodSandboxRequest,
    RemovePodSandboxResponse, ReopenContainerLogRequest, ReopenContainerLogResponse,
    RunPodSandboxRequest, RunPodSandboxResponse, RuntimeConfigRequest, RuntimeConfigResponse,
    StartContainerRequest, StartContainerResponse, StatusRequest, StatusResponse,
    StopContainerRequest, StopContainerResponse, StopPodSandboxRequest, StopPodSandboxResponse,
    UpdateContainerResourcesRequest, UpdateContainerResourcesResponse, UpdateRuntimeConfigRequest,
    UpdateRuntimeConfigResponse, VersionRequest, VersionResponse,
    runtime_service_server::RuntimeService,
};
use crio_api::status::unimplemented;
use tonic::{Request, Response};

use super::{
    Rpc, State, container_status, runtime_config, runtime_status, runtime_version, sandbox_status,
    stats,
};

/// Serves the CRI RuntimeService.
#[derive(Clone)]
pub struct RuntimeApi {
    state: Arc<State>,
}

impl RuntimeApi {
    /// A service over the daemon's state.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// A running container's record, or the status that says why not.
    async fn running(&self, id: &str) -> Result<crate::containers::ContainerRecord, tonic::Status> {
        let st = &self.state;
        let r = st.containers.refresh(&st.pods, self.shims()?, id).await?;
        if r.state != crate::containers::ContainerState::Running {
            return Err(tonic::Status::failed_precondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(r)
    }

    /// A URL on the streaming server for `request`.
    fn stream_url(&self, request: crio_streaming::Request) -> Result<String, tonic::Status> {
        let server = self
            .state
            .streaming
            .get()
            .ok_or_else(|| tonic::Status::unavailable("the streaming server is not running"))?;
        server
            .url(request)
            .map_err(|e| tonic::Status::resource_exhausted(e.to_string()))
    }

    fn shims(&self) -> Result<&crate::shim::Shims, tonic::Status> {
        self.state.shims.as_deref().ok_or_else(|| {
            tonic::Status::failed_precondition(format!(
                "the pod shim {} was not found at start-up: containers cannot run",
                crate::shim_binary::SHIM_NAME
            ))
        })
    }
}

/// The request's container ID (or unique prefix), refused when it cannot be one.
fn container_id(id: &str) -> Result<&str, tonic::Status> {
    crate::ids::requested("container", "container_id", id)
}

/// The request's pod sandbox ID (or unique prefix), refused when it cannot be one.
fn pod_id(id: &str) -> Result<&str, tonic::Status> {
    crate::ids::requested("pod sandbox", "pod_sandbox_id", id)
}

/// A pod's containers, its infra container (if any) last.
fn with_infra_last(st: &State, pod_id: &str) -> Vec<crate::containers::ContainerRecord> {
    let mut all = st.containers.of_pod(pod_id);
    all.extend(st.containers.infra_of(pod_id));
    all
}

/// RemovePodSandbox: its containers (infra last), its shim, then the pod.
async fn remove_pod(st: &State, shims: &crate::shim::Shims, id: &str) -> Result<(), tonic::Status> {
    if let Some(pod) = st.pods.get(id) {
        for c in with_infra_last(st, &pod.id) {
            st.containers.remove(&st.pods, shims, &c.id).await?;
        }
        shims.shutdown(&pod.id, &st.pods.run_dir(&pod.id)).await;
    }
    st.pods.remove(id).await
}

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(&self, req: Request<VersionRequest>) -> Rpc<VersionResponse> {
        Ok(Response::new(runtime_version::version(req.get_ref())))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Rpc<RunPodSandboxResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| crio_api::status::invalid_field("config", "is required"))?;
        let id = self.state.pods.run(config, req.runtime_handler).await?;
        let st = &self.state;
        let needs_infra =
            |p: &crate::pods::PodRecord| p.shares_pid() || !st.config.runtime.drop_infra_ctr;
        if let Some(pod) = st.pods.get(&id).filter(needs_infra) {
            self.shims()?;
            // In a task of its own: a kubelet giving up does not cut it short.
            let st = self.state.clone();
            let made = tokio::spawn(async move {
                let Some(shims) = st.shims.as_ref() else {
                    return Ok(());
                };
                let result = st
                    .containers
                    .run_infra(&st.pods, &st.images, shims, &pod, &st.config.image)
                    .await;
                if result.is_err() {
                    remove_pod(&st, shims, &pod.id).await?;
                }
                result
            })
            .await;
            made.map_err(|e| tonic::Status::internal(format!("infra container: {e}")))??;
        }
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Rpc<StopPodSandboxResponse> {
        let id = pod_id(&req.get_ref().pod_sandbox_id)?;
        let st = &self.state;
        if let (Some(pod), Ok(shims)) = (st.pods.get(id), self.shims()) {
            for c in with_infra_last(st, &pod.id) {
                st.containers.stop(&st.pods, shims, &c.id, 0).await?;
            }
        }
        st.pods.stop(id).await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Rpc<RemovePodSandboxResponse> {
        let id = pod_id(&req.get_ref().pod_sandbox_id)?;
        match self.shims() {
            Ok(shims) => remove_pod(&self.state, shims, id).await?,
            Err(_) => self.state.pods.remove(id).await?,
        }
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Rpc<PodSandboxStatusResponse> {
        pod_id(&req.get_ref().pod_sandbox_id)?;
        sandbox_status::pod_sandbox_status(&self.state.pods, req.get_ref()).map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Rpc<ListPodSandboxResponse> {
        Ok(Response::new(sandbox_status::list_pod_sandbox(
            &self.state.pods,
            req.get_ref(),
        )))
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Rpc<CreateContainerResponse> {
        let req = req.into_inner();
        pod_id(&req.pod_sandbox_id)?;
        let config = req
            .config
            .ok_or_else(|| crio_api::status::invalid_field("config", "is required"))?;
        self.shims()?;
        // In a task of its own: a kubelet giving up does not cut it short.
        let st = self.state.clone();
        let id = tokio::spawn(async move {
            let shims = st
                .shims
                .as_ref()
                .ok_or_else(|| tonic::Status::unavailable("no shim"))?;
            st.containers
                .create(&st.pods, &st.images, shims, &req.pod_sandbox_id, config)
                .await
        })
        .await
        .map_err(|e| tonic::Status::internal(format!("CreateContainer: {e}")))??;
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Rpc<StartContainerResponse> {
        let st = &self.state;
        st.containers
            .start(
                &st.pods,
                self.shims()?,
                container_id(&req.get_ref().container_id)?,
            )
            .await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Rpc<StopContainerResponse> {
        let st = &self.state;
        let req = req.into_inner();
        st.containers
            .stop(
                &st.pods,
                self.shims()?,
                container_id(&req.container_id)?,
                req.timeout,
            )
            .await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Rpc<RemoveContainerResponse> {
        let st = &self.state;
        st.containers
            .remove(
                &st.pods,
                self.shims()?,
                container_id(&req.get_ref().container_id)?,
            )
            .await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Rpc<ListContainersResponse> {
        let st = &self.state;
        if let Ok(shims) = self.shims() {
            st.containers.refresh_ended(&st.pods, shims).await;
        }
        Ok(Response::new(container_status::list(
            &st.containers,
            req.get_ref(),
        )))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Rpc<ContainerStatusResponse> {
        let st = &self.state;
        let req = req.into_inner();
        let record = st
            .containers
            .refresh(&st.pods, self.shims()?, container_id(&req.container_id)?)
            .await?;
        let verbose = match req.verbose {
            true => Some(
                st.containers
                    .verbose_info(&st.pods, self.shims()?, &record)
                    .await,
            ),
            false => None,
        };
        Ok(Response::new(container_status::status(&record, verbose)))
    }

    async fn update_container_resources(
        &self,
        req: Request<UpdateContainerResourcesRequest>,
    ) -> Rpc<UpdateContainerResourcesResponse> {
        let st = &self.state;
        let req = req.into_inner();
        let linux = req
            .linux
            .ok_or_else(|| crio_api::status::invalid_field("linux", "is required"))?;
        st.containers
            .update_resources(
                &st.pods,
                self.shims()?,
                container_id(&req.container_id)?,
                linux,
            )
            .await?;
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<ReopenContainerLogRequest>,
    ) -> Rpc<ReopenContainerLogResponse> {
        let st = &self.state;
        st.containers
            .reopen_log(
                &st.pods,
                self.shims()?,
                container_id(&req.get_ref().container_id)?,
            )
            .await?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, req: Request<ExecSyncRequest>) -> Rpc<ExecSyncResponse> {
        let st = &self.state;
        let req = req.into_inner();
        let (stdout, stderr, exit_code) = st
            .containers
            .exec_sync(
                &st.pods,
                self.shims()?,
                container_id(&req.container_id)?,
                req.cmd,
                req.timeout,
            )
            .await?;
        Ok(Response::new(ExecSyncResponse {
            stdout,
            stderr,
            exit_code,
        }))
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Rpc<ExecResponse> {
        let req = req.into_inner();
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
        let record = self.running(&req.container_id).await?;
        let url = self.stream_url(crio_streaming::Request::Exec(crio_streaming::ExecRequest {
            container_id: record.id.to_string(),
            cmd: req.cmd,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr && !req.tty,
        }))?;
        Ok(Response::new(ExecResponse { url }))
    }

    async fn attach(&self, req: Request<AttachRequest>) -> Rpc<AttachResponse> {
        let req = req.into_inner();
        let record = self.running(container_id(&req.container_id)?).await?;
        let url = self.stream_url(crio_streaming::Request::Attach(
            crio_streaming::AttachRequest {
                container_id: record.id.to_string(),
                stdin: req.stdin && record.config.stdin,
                tty: record.config.tty,
                stdout: req.stdout,
                stderr: req.stderr && !record.config.tty,
            },
        ))?;
        Ok(Response::new(AttachResponse { url }))
    }

    async fn port_forward(&self, req: Request<PortForwardRequest>) -> Rpc<PortForwardResponse> {
        let req = req.into_inner();
        let pod = self
            .state
            .pods
            .get(pod_id(&req.pod_sandbox_id)?)
            .ok_or_else(|| crio_api::status::not_found("pod sandbox", &req.pod_sandbox_id))?;
        if pod.state != crate::pods::PodState::Ready {
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
        let url = self.stream_url(crio_streaming::Request::PortForward(
            crio_streaming::PortForwardRequest {
                pod_sandbox_id: pod.id.to_string(),
                ports: req.port,
            },
        ))?;
        Ok(Response::new(PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        req: Request<ContainerStatsRequest>,
    ) -> Rpc<ContainerStatsResponse> {
        let id = container_id(&req.get_ref().container_id)?;
        let stats = stats::one(&self.state, self.shims()?, id).await?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        req: Request<ListContainerStatsRequest>,
    ) -> Rpc<ListContainerStatsResponse> {
        let f = req.into_inner().filter.unwrap_or_default();
        let stats = stats::list(
            &self.state,
            self.shims()?,
            &f.id,
            &f.pod_sandbox_id,
            &f.label_selector,
        )
        .await;
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<PodSandboxStatsRequest>,
    ) -> Rpc<PodSandboxStatsResponse> {
        let id = pod_id(&req.get_ref().pod_sandbox_id)?;
        let pod = self
            .state
            .pods
            .get(id)
            .ok_or_else(|| crio_api::status::not_found("pod sandbox", id))?;
        let stats = stats::pod_stats(&self.state, self.shims()?, &pod).await;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<ListPodSandboxStatsRequest>,
    ) -> Rpc<ListPodSandboxStatsResponse> {
        let f = req.into_inner().filter.unwrap_or_default();
        let shims = self.shims()?;
        let mut stats = Vec::new();
        for pod in self.state.pods.list() {
            let matches = pod.id.starts_with(&f.id)
                && f.label_selector
                    .iter()
                    .all(|(k, v)| pod.config.labels.get(k) == Some(v));
            if matches {
                stats.push(stats::pod_stats(&self.state, shims, &pod).await);
            }
        }
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Rpc<UpdateRuntimeConfigResponse> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.state.pods.set_pod_cidr(&cidr)?;
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Rpc<StatusResponse> {
        Ok(Response::new(runtime_status::status(
            &self.state.config,
            &self.state.handler_features,
            req.get_ref(),
        )))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<CheckpointContainerRequest>,
    ) -> Rpc<CheckpointContainerResponse> {
        Err(unimplemented("CheckpointContainer"))
    }

    type GetContainerEventsStream =
        tokio_stream::Empty<Result<crio_api::cri::ContainerEventResponse, tonic::Status>>;

    async fn get_container_events(
        &self,
        _req: Request<GetEventsRequest>,
    ) -> Rpc<Self::GetContainerEventsStream> {
        Err(unimplemented("GetContainerEvents"))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<ListMetricDescriptorsRequest>,
    ) -> Rpc<ListMetricDescriptorsResponse> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<ListPodSandboxMetricsRequest>,
    ) -> Rpc<ListPodSandboxMetricsResponse> {
        Err(unimplemented("ListPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _req: Request<RuntimeConfigRequest>,
    ) -> Rpc<RuntimeConfigResponse> {
        Ok(Response::new(runtime_config::runtime_config(
            &self.state.config,
        )))
    }
}
