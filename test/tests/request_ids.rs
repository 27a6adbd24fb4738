//! Container and pod IDs in requests are names, never paths: an ID that is
//! not one the daemon could have made is refused at the edge, and nothing
//! outside the daemon's directories is touched.

use crio_api::cri::{
    AttachRequest, ContainerStatsRequest, ContainerStatusRequest, CreateContainerRequest,
    ExecRequest, ExecSyncRequest, LinuxContainerResources, PodSandboxStatsRequest,
    PodSandboxStatusRequest, PortForwardRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    ReopenContainerLogRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    UpdateContainerResourcesRequest,
};
use crio_test::TestDaemon;
use tonic::Code;

/// The call must fail with NotFound or InvalidArgument.
fn refused<T: std::fmt::Debug>(
    what: &str,
    id: &str,
    result: Result<tonic::Response<T>, tonic::Status>,
) {
    match result {
        Ok(r) => panic!("{what}({id:?}) succeeded: {r:?}"),
        Err(e) => assert!(
            matches!(e.code(), Code::NotFound | Code::InvalidArgument),
            "{what}({id:?}): {e:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_that_are_paths_are_refused_and_touch_nothing() {
    let daemon = TestDaemon::start().unwrap();
    // Each store's `<dir>/<id>` with these IDs lands on the victim: the
    // stores sit two levels below the daemon's directory.
    let victim = daemon.path("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "keep").unwrap();
    std::fs::write(daemon.path("victim.json"), "{}").unwrap();
    let mut client = daemon.client().await.unwrap();
    let rt = &mut client.runtime;
    for id in [
        "../../victim",
        "../../victim/",
        "/",
        "..",
        "",
        "abc/../..",
        "ABCDEF",
    ] {
        let c = || id.to_string();
        refused(
            "StopContainer",
            id,
            rt.stop_container(StopContainerRequest {
                container_id: c(),
                timeout: 0,
            })
            .await,
        );
        refused(
            "RemoveContainer",
            id,
            rt.remove_container(RemoveContainerRequest { container_id: c() })
                .await,
        );
        refused(
            "StartContainer",
            id,
            rt.start_container(StartContainerRequest { container_id: c() })
                .await,
        );
        refused(
            "ContainerStatus",
            id,
            rt.container_status(ContainerStatusRequest {
                container_id: c(),
                verbose: true,
            })
            .await,
        );
        refused(
            "ExecSync",
            id,
            rt.exec_sync(ExecSyncRequest {
                container_id: c(),
                cmd: vec!["true".into()],
                timeout: 1,
            })
            .await,
        );
        refused(
            "Exec",
            id,
            rt.exec(ExecRequest {
                container_id: c(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await,
        );
        refused(
            "Attach",
            id,
            rt.attach(AttachRequest {
                container_id: c(),
                stdout: true,
                ..Default::default()
            })
            .await,
        );
        refused(
            "ReopenContainerLog",
            id,
            rt.reopen_container_log(ReopenContainerLogRequest { container_id: c() })
                .await,
        );
        refused(
            "UpdateContainerResources",
            id,
            rt.update_container_resources(UpdateContainerResourcesRequest {
                container_id: c(),
                linux: Some(LinuxContainerResources::default()),
                ..Default::default()
            })
            .await,
        );
        refused(
            "ContainerStats",
            id,
            rt.container_stats(ContainerStatsRequest { container_id: c() })
                .await,
        );
        refused(
            "StopPodSandbox",
            id,
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: c(),
            })
            .await,
        );
        refused(
            "RemovePodSandbox",
            id,
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: c(),
            })
            .await,
        );
        refused(
            "PodSandboxStatus",
            id,
            rt.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: c(),
                verbose: true,
            })
            .await,
        );
        refused(
            "PodSandboxStats",
            id,
            rt.pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: c(),
            })
            .await,
        );
        refused(
            "PortForward",
            id,
            rt.port_forward(PortForwardRequest {
                pod_sandbox_id: c(),
                port: vec![80],
            })
            .await,
        );
        refused(
            "CreateContainer",
            id,
            rt.create_container(CreateContainerRequest {
                pod_sandbox_id: c(),
                config: Some(Default::default()),
                sandbox_config: Some(Default::default()),
            })
            .await,
        );
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "keep"
    );
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        1,
        "something was made in the victim"
    );
    assert_eq!(
        std::fs::read_to_string(daemon.path("victim.json")).unwrap(),
        "{}"
    );
}
