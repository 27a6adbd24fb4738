//! Images built to reach the host through the container's rootfs: links
//! past the kernel's limit at /etc/passwd and at a VOLUME, and a FIFO at
//! /etc/passwd. CreateContainer refuses each, naming the file, without
//! blocking the daemon, and nothing outside the rootfs is read or made.

use std::time::Duration;

use crio_api::cri::{LinuxContainerConfig, LinuxContainerSecurityContext};
use crio_test::containers::{container, create, list_containers, remove_pod, run_pod, setup};
use crio_test::image::{BuiltLayer, Compression, Image, Layer, RunConfig};
use crio_test::images::{IMAGE_PATH, busybox_layer};
use crio_test::pods::pod_config;
use tar::EntryType as T;
use tonic::Code;

const POD: i32 = crio_api::cri::NamespaceMode::Pod as i32;

/// `from` → `/chain1` → … → `/chain40` → `target`: 41 links, one past the
/// kernel's limit, the last pointing at a host path.
fn chain(layer: Layer, from: &str, prefix: &str, target: &str) -> Layer {
    let mut layer = layer.symlink(from, &format!("/{prefix}1"));
    for i in 1..40 {
        layer = layer.symlink(&format!("{prefix}{i}"), &format!("/{prefix}{}", i + 1));
    }
    layer.symlink(&format!("{prefix}40"), target)
}

fn push(registry: &crio_test::Registry, tag: &str, layer: Layer, volumes: &[&str]) -> String {
    Image::new(
        vec![
            BuiltLayer::new(busybox_layer().unwrap(), Compression::Gzip),
            BuiltLayer::new(layer, Compression::Gzip),
        ],
        RunConfig {
            env: vec![IMAGE_PATH.into()],
            volumes: volumes.iter().map(|v| v.to_string()).collect(),
            ..RunConfig::default()
        },
    )
    .push(registry, "test/hostile", tag)
    .unwrap()
    .reference
}

#[tokio::test(flavor = "multi_thread")]
async fn rootfs_paths_never_resolve_outside_and_fifos_do_not_block() {
    let mut s = setup().await;
    let host = tempfile::tempdir().unwrap();
    let host_passwd = host.path().join("passwd");
    std::fs::write(&host_passwd, "tester:x:4242:4242::/:/bin/sh\n").unwrap();
    let host_dir = host.path().join("dir");
    std::fs::create_dir(&host_dir).unwrap();

    let passwd_chain = push(
        &s._registry,
        "passwd-chain",
        chain(
            Layer::new().dir("etc", 0o755),
            "etc/passwd",
            "p",
            &host_passwd.display().to_string(),
        ),
        &[],
    );
    let volume_chain = push(
        &s._registry,
        "volume-chain",
        chain(Layer::new(), "vol", "v", &host_dir.display().to_string()),
        &["/vol/made"],
    );
    let fifo = push(
        &s._registry,
        "fifo-passwd",
        Layer::new()
            .dir("etc", 0o755)
            .raw(T::Fifo, "etc/passwd", "", b""),
        &[],
    );
    let pod = run_pod(&mut s.client, pod_config("hostile", POD, POD)).await;
    let cases = [
        (passwd_chain, "/etc/passwd"),
        (volume_chain, "/vol/made"),
        (fifo, "/etc/passwd: not a regular file"),
    ];
    for (image, why) in cases {
        crio_test::cri::pull(&mut s.client, &image).await.unwrap();
        let mut config = container("hostile", &image, &["true"]);
        config.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_username: "tester".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        // Before the fix the FIFO case blocked a daemon thread for good.
        let err =
            tokio::time::timeout(Duration::from_secs(60), create(&mut s.client, &pod, config))
                .await
                .unwrap_or_else(|_| panic!("{image}: CreateContainer did not answer"))
                .expect_err(&image);
        assert_eq!(
            err.code(),
            Code::FailedPrecondition,
            "{image}: {}",
            err.message()
        );
        assert!(err.message().contains(why), "{image}: {}", err.message());
        assert!(
            !host_dir.join("made").exists(),
            "{image}: made a host directory"
        );
        assert_eq!(
            std::fs::read_to_string(&host_passwd).unwrap(),
            "tester:x:4242:4242::/:/bin/sh\n"
        );
    }
    // The daemon still answers, and the failed creates left no container.
    let listed = list_containers(&mut s.client).await;
    assert!(listed.is_empty(), "{listed:?}");
    remove_pod(&mut s.client, &pod).await;
}
