//! The CRI RuntimeService: each RPC dispatched to the module of its family.

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
use tonic::{Request, Response};

use super::{
    Rpc, State, container_events, container_id, container_lifecycle, container_status,
    container_update, pod_id, pod_metrics, runtime_config, runtime_status, runtime_version,
    sandbox_lifecycle, sandbox_status, stats, streaming,
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
        sandbox_lifecycle::run(&self.state, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Rpc<StopPodSandboxResponse> {
        sandbox_lifecycle::stop(&self.state, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Rpc<RemovePodSandboxResponse> {
        sandbox_lifecycle::remove(&self.state, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Rpc<PodSandboxStatusResponse> {
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
        container_lifecycle::create(&self.state, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Rpc<StartContainerResponse> {
        container_lifecycle::start(&self.state, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Rpc<StopContainerResponse> {
        container_lifecycle::stop(&self.state, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Rpc<RemoveContainerResponse> {
        container_lifecycle::remove(&self.state, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Rpc<ListContainersResponse> {
        Ok(Response::new(container_status::list_containers(
            &self.state,
            req.get_ref(),
        )))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Rpc<ContainerStatusResponse> {
        container_status::container_status(&self.state, req.get_ref()).map(Response::new)
    }

    async fn update_container_resources(
        &self,
        req: Request<UpdateContainerResourcesRequest>,
    ) -> Rpc<UpdateContainerResourcesResponse> {
        container_update::update_resources(&self.state, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn reopen_container_log(
        &self,
        req: Request<ReopenContainerLogRequest>,
    ) -> Rpc<ReopenContainerLogResponse> {
        container_update::reopen_log(&self.state, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn exec_sync(&self, req: Request<ExecSyncRequest>) -> Rpc<ExecSyncResponse> {
        streaming::exec_sync(&self.state, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Rpc<ExecResponse> {
        streaming::exec(&self.state, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn attach(&self, req: Request<AttachRequest>) -> Rpc<AttachResponse> {
        streaming::attach(&self.state, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn port_forward(&self, req: Request<PortForwardRequest>) -> Rpc<PortForwardResponse> {
        streaming::port_forward(&self.state, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn container_stats(
        &self,
        req: Request<ContainerStatsRequest>,
    ) -> Rpc<ContainerStatsResponse> {
        let id = container_id(&req.get_ref().container_id)?;
        let stats = stats::one(&self.state, id).await?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        req: Request<ListContainerStatsRequest>,
    ) -> Rpc<ListContainerStatsResponse> {
        let f = req.into_inner().filter.unwrap_or_default();
        let stats = stats::list(&self.state, &f.id, &f.pod_sandbox_id, &f.label_selector).await?;
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<PodSandboxStatsRequest>,
    ) -> Rpc<PodSandboxStatsResponse> {
        let id = pod_id(&req.get_ref().pod_sandbox_id)?;
        let stats = stats::one_pod(&self.state, id).await?;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<ListPodSandboxStatsRequest>,
    ) -> Rpc<ListPodSandboxStatsResponse> {
        let f = req.into_inner().filter.unwrap_or_default();
        let stats = stats::list_pods(&self.state, &f.id, &f.label_selector).await?;
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Rpc<UpdateRuntimeConfigResponse> {
        runtime_config::update_runtime_config(&self.state, req.into_inner()).map(Response::new)
    }

    async fn status(&self, req: Request<StatusRequest>) -> Rpc<StatusResponse> {
        Ok(Response::new(runtime_status::status(
            &self.state.config,
            &self.state.handlers,
            &self.state.apparmor,
            req.get_ref(),
        )))
    }

    async fn checkpoint_container(
        &self,
        req: Request<CheckpointContainerRequest>,
    ) -> Rpc<CheckpointContainerResponse> {
        container_lifecycle::checkpoint(&self.state, req.get_ref()).map(Response::new)
    }

    type GetContainerEventsStream = container_events::EventStream;

    async fn get_container_events(
        &self,
        _req: Request<GetEventsRequest>,
    ) -> Rpc<Self::GetContainerEventsStream> {
        Ok(Response::new(container_events::subscribe(
            self.state.clone(),
        )))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<ListMetricDescriptorsRequest>,
    ) -> Rpc<ListMetricDescriptorsResponse> {
        Ok(Response::new(pod_metrics::descriptors(&self.state)))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<ListPodSandboxMetricsRequest>,
    ) -> Rpc<ListPodSandboxMetricsResponse> {
        pod_metrics::list(&self.state).await.map(Response::new)
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
