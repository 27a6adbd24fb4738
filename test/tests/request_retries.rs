//! Kubelet retries: a RunPodSandbox or CreateContainer sent again with the
//! same request (labels and annotations of several keys, each request built
//! afresh so its maps iterate in another order) gets the same ID, before
//! and after a daemon restart; a different request for the taken name is
//! refused.

use std::collections::HashMap;

use crio_api::cri::{NamespaceMode, PodSandboxConfig};
use crio_test::containers::{container, create, remove_pod, setup, try_run_pod};
use crio_test::pods::pod_config;
use nix::sys::signal::Signal;
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;

/// Eight keys, inserted in an order of their own per call.
fn map(prefix: &str, start: usize) -> HashMap<String, String> {
    (0..8)
        .map(|i| (i + start) % 8)
        .map(|i| {
            (
                format!("{prefix}.example.com/key-{i}"),
                format!("value {i}"),
            )
        })
        .collect()
}

fn pod(start: usize) -> PodSandboxConfig {
    let mut config = pod_config("retried", POD, POD);
    config.labels = map("label", start);
    config.annotations = map("annotation", start + 3);
    config
}

fn ctr(image: &str, start: usize) -> crio_api::cri::ContainerConfig {
    let mut config = container("retried", image, &["sleep", "600"]);
    config.labels = map("label", start + 5);
    config.annotations = map("annotation", start + 1);
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_get_the_same_ids_before_and_after_a_restart() {
    let mut s = setup().await;
    let image = s.images.busybox.reference.clone();
    let pod_id = try_run_pod(&mut s.client, pod(0)).await.unwrap();
    let ctr_id = create(&mut s.client, &pod_id, ctr(&image, 0))
        .await
        .unwrap();
    for start in 1..4 {
        assert_eq!(
            try_run_pod(&mut s.client, pod(start)).await.unwrap(),
            pod_id
        );
        assert_eq!(
            create(&mut s.client, &pod_id, ctr(&image, start))
                .await
                .unwrap(),
            ctr_id
        );
    }

    // Killed and started again: the records hold the requests.
    drop(s.client);
    s.world.daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    s.world.daemon.spawn().unwrap();
    let mut client = s.world.daemon.client().await.unwrap();
    for start in 4..7 {
        assert_eq!(try_run_pod(&mut client, pod(start)).await.unwrap(), pod_id);
        assert_eq!(
            create(&mut client, &pod_id, ctr(&image, start))
                .await
                .unwrap(),
            ctr_id
        );
    }

    // Another request for the same names is refused, naming the holder.
    let mut other_pod = pod(0);
    other_pod
        .annotations
        .insert("annotation.example.com/key-3".into(), "changed".into());
    let err = try_run_pod(&mut client, other_pod).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains(&pod_id), "{}", err.message());
    let mut other_ctr = ctr(&image, 0);
    other_ctr
        .labels
        .insert("label.example.com/key-9".into(), "new".into());
    let err = create(&mut client, &pod_id, other_ctr).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains(&ctr_id), "{}", err.message());

    remove_pod(&mut client, &pod_id).await;
}
