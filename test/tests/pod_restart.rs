//! Pods across daemon restarts: a killed daemon finds its pods again, and
//! the first start after a reboot (volatile state gone) removes the pods
//! left, their network released.

use crio_api::cri::{
    ListPodSandboxRequest, NamespaceMode, PodSandboxState, PodSandboxStatusRequest,
    RunPodSandboxRequest,
};
use crio_test::daemon::unmount_below;
use crio_test::pods::{PodWorld, pod_config};
use nix::sys::signal::Signal;

const POD: i32 = NamespaceMode::Pod as i32;

#[tokio::test(flavor = "multi_thread")]
async fn pods_survive_a_daemon_kill_and_a_reboot_wipes_them() {
    let mut world = PodWorld::start().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let id = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("survivor", POD, POD)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let status = |c: &mut crio_api::client::CriClient| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            c.runtime
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
        }
    };
    let before = status(&mut client).await;

    // Killed and restarted: the pod is still there, ready, same address.
    drop(client);
    world.daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    world.daemon.spawn().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let after = status(&mut client).await;
    assert_eq!(after.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(after.network, before.network);
    assert_eq!(after.created_at, before.created_at);
    // The name is still reserved: a retry gets the same pod.
    let again = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("survivor", POD, POD)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(again, id);

    // A reboot: the daemon stops, volatile state and mounts are gone.
    drop(client);
    world.daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    unmount_below(&world.daemon.path("run"));
    unmount_below(&world.daemon.path("ns"));
    std::fs::remove_dir_all(world.daemon.path("run")).unwrap();
    std::fs::create_dir_all(world.daemon.path("run")).unwrap();
    for kind in ["netns", "ipcns", "utsns"] {
        let _ = std::fs::remove_file(world.daemon.path(&format!("ns/{kind}/{id}")));
    }
    // The first start since the reboot removes the pod (as CRI-O's wipe)
    // and its CNI DEL releases the address, before it serves a call.
    world.daemon.spawn().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let err = client
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    assert!(
        world.leases().is_empty(),
        "the pod's address outlived the reboot: {:?}",
        world.leases()
    );
    assert!(!world.daemon.path(&format!("root/pods/{id}.json")).exists());
    // The kubelet's stop and remove of the pod it knew still succeed.
    crio_test::containers::remove_pod(&mut client, &id).await;
    let left = client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(left.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_network_broken_while_the_daemon_was_down_is_reported_at_start() {
    let mut world = PodWorld::start().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let mut ids = Vec::new();
    for name in ["broken", "intact"] {
        ids.push(
            client
                .runtime
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(pod_config(name, POD, POD)),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .pod_sandbox_id,
        );
    }
    drop(client);
    world.daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    // The first pod's interface goes away while the daemon is down.
    let netns = world.daemon.path("ns/netns").join(&ids[0]);
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "link", "del", "eth0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.daemon.spawn().unwrap();
    let broken = |log: &str, id: &str| {
        log.lines()
            .any(|l| l.contains("pod network broken (CNI CHECK)") && l.contains(id))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !broken(&world.daemon.log(), &ids[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "no CHECK failure reported:\n{}",
            world.daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The intact pod was checked and passed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !world
        .daemon
        .log()
        .lines()
        .any(|l| l.contains("CNI CHECK passed") && l.contains(&ids[1]))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the intact pod was not checked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!broken(&world.daemon.log(), &ids[1]));
    let mut client = world.daemon.client().await.unwrap();
    for id in ids {
        crio_test::containers::remove_pod(&mut client, &id).await;
    }
    assert!(world.leases().is_empty(), "{:?}", world.leases());
}
