//! A daemon with pulled images and the container calls the tests repeat.

use std::time::{Duration, Instant};

use crio_api::client::CriClient;
use crio_api::cri::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, RunPodSandboxRequest,
};

use crate::Registry;
use crate::cri::pull;
use crate::images::push_standard_images;
use crate::pods::PodWorld;

/// A container config running `command` from `image`, logging to
/// `<name>.log` in the pod's log directory.
pub fn container(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..ImageSpec::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..ContainerConfig::default()
    }
}

/// A container from `image` that reads 96 MiB at once under a 32 MiB
/// memory limit: the OOM killer ends it.
pub fn memory_hog(name: &str, image: &str) -> ContainerConfig {
    let mut config = container(
        name,
        image,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"],
    );
    config.linux = Some(crio_api::cri::LinuxContainerConfig {
        resources: Some(crio_api::cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        security_context: None,
    });
    config
}

/// A registry with the standard images, a daemon on its own network that
/// has pulled busybox, and a client.
pub struct Setup {
    /// The daemon and its network.
    pub world: PodWorld,
    /// A client of the daemon.
    pub client: CriClient,
    /// The registry's images.
    pub images: crate::images::StandardImages,
    /// The registry, kept running.
    pub _registry: Registry,
}

/// Starts a registry with the standard images and a daemon that pulled busybox.
pub async fn setup() -> Setup {
    setup_with_files(&[]).await
}

/// Like [`setup`], with `files` written into the daemon's directory before
/// it starts (a drop-in under `conf.d/` changes its configuration).
pub async fn setup_with_files(files: &[(&str, &str)]) -> Setup {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let world = PodWorld::start_with_registry_files(&registry, "", files).unwrap();
    let mut client = world.daemon.client().await.unwrap();
    pull(&mut client, &images.busybox.reference).await.unwrap();
    Setup {
        world,
        client,
        images,
        _registry: registry,
    }
}

/// Runs a pod; its ID.
pub async fn run_pod(client: &mut CriClient, config: crio_api::cri::PodSandboxConfig) -> String {
    try_run_pod(client, config).await.unwrap()
}

/// Runs a pod; its ID or the call's error.
pub async fn try_run_pod(
    client: &mut CriClient,
    config: crio_api::cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    try_run_pod_with(client, config, "").await
}

/// Runs a pod under runtime handler `handler` ("" is the default); its ID
/// or the call's error.
pub async fn try_run_pod_with(
    client: &mut CriClient,
    config: crio_api::cri::PodSandboxConfig,
    handler: &str,
) -> Result<String, tonic::Status> {
    client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler.into(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

/// Creates a container in `pod`.
pub async fn create(
    client: &mut CriClient,
    pod: &str,
    config: ContainerConfig,
) -> Result<String, tonic::Status> {
    client
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().container_id)
}

/// Starts container `id`.
pub async fn start_container(client: &mut CriClient, id: impl Into<String>) {
    client
        .runtime
        .start_container(crio_api::cri::StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

/// Every container the daemon lists.
pub async fn list_containers(client: &mut CriClient) -> Vec<crio_api::cri::Container> {
    client
        .runtime
        .list_containers(crio_api::cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers
}

/// Every pod the daemon lists.
pub async fn list_pods(client: &mut CriClient) -> Vec<crio_api::cri::PodSandbox> {
    client
        .runtime
        .list_pod_sandbox(crio_api::cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
}

/// Runs `sh -c script` in container `id`: its exit code, stdout and
/// stderr (trimmed).
pub async fn exec_sh(client: &mut CriClient, id: &str, script: &str) -> (i32, String, String) {
    let r = client
        .runtime
        .exec_sync(crio_api::cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 20,
        })
        .await
        .unwrap()
        .into_inner();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (r.exit_code, text(&r.stdout), text(&r.stderr))
}

/// A container's status.
pub async fn status(client: &mut CriClient, id: &str) -> crio_api::cri::ContainerStatus {
    client
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// A pod's status.
pub async fn pod_status(client: &mut CriClient, id: &str) -> crio_api::cri::PodSandboxStatus {
    client
        .runtime
        .pod_sandbox_status(crio_api::cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// Polls until the container has exited (20 s at most).
pub async fn wait_exited(client: &mut CriClient, id: &str) -> crio_api::cri::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(client, id).await;
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not exit: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops container `id` (no grace period).
pub async fn stop(client: &mut CriClient, id: &str) {
    client
        .runtime
        .stop_container(crio_api::cri::StopContainerRequest {
            container_id: id.into(),
            timeout: 0,
        })
        .await
        .unwrap();
}

/// Stops and removes pod `id` with its containers.
pub async fn remove_pod(client: &mut CriClient, id: &str) {
    client
        .runtime
        .stop_pod_sandbox(crio_api::cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
    client
        .runtime
        .remove_pod_sandbox(crio_api::cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
}

/// The stdout of [`exec_sh`], which must succeed.
pub async fn sh_out(client: &mut CriClient, id: &str, script: &str) -> String {
    let (code, stdout, stderr) = exec_sh(client, id, script).await;
    assert_eq!(code, 0, "{script}: {stderr}");
    stdout
}
