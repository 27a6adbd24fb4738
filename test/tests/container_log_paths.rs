//! Where a container's log goes: `log_path` stays inside the pod's
//! `log_directory` (an absolute path or `..` is refused), and the shim does
//! not write through a symlink planted where the log file goes.

use crio_api::cri::NamespaceMode;
use crio_test::containers::{Setup, container, create, run_pod, setup, start_container};
use crio_test::containers::{list_containers, wait_exited};
use crio_test::pods::pod_config;
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;

#[tokio::test(flavor = "multi_thread")]
async fn log_paths_outside_the_log_directory_are_refused() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let logs = world.daemon.path("podlogs");
    let mut pod = pod_config("logs", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut client, pod).await;
    let outside = world.daemon.path("outside.log");
    for bad in [
        "../outside.log".to_string(),
        "x/../../outside.log".to_string(),
        outside.display().to_string(),
    ] {
        let mut config = container("bad", &images.busybox.reference, &["echo", "escaped"]);
        config.log_path = bad.clone();
        let err = create(&mut client, &pod_id, config).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(
            err.message().contains("log_path"),
            "{bad}: {}",
            err.message()
        );
    }
    assert!(list_containers(&mut client).await.is_empty());
    assert!(!outside.exists());

    // A path below the log directory, in a directory yet to be made, is fine.
    let mut config = container("good", &images.busybox.reference, &["echo", "inside"]);
    config.log_path = "good/0.log".into();
    let id = create(&mut client, &pod_id, config).await.unwrap();
    start_container(&mut client, id.clone()).await;
    assert_eq!(wait_exited(&mut client, &id).await.exit_code, 0);
    let log = std::fs::read_to_string(logs.join("good/0.log")).unwrap();
    assert!(log.ends_with(" stdout F inside\n"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shim_does_not_log_through_a_planted_symlink() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let logs = world.daemon.path("podlogs");
    let victim = world.daemon.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("file"), "host file\n").unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    // What a pod with a hostPath mount of its log directory could plant.
    std::os::unix::fs::symlink(victim.join("file"), logs.join("link.log")).unwrap();
    std::os::unix::fs::symlink(&victim, logs.join("linkdir")).unwrap();
    let mut pod = pod_config("planted", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut client, pod).await;
    let mut refused = Vec::new();
    for (name, path) in [("last", "link.log"), ("parent", "linkdir/file")] {
        let mut config = container(name, &images.busybox.reference, &["echo", "escaped"]);
        config.log_path = path.into();
        match create(&mut client, &pod_id, config).await {
            Ok(id) => {
                start_container(&mut client, id.clone()).await;
                wait_exited(&mut client, &id).await;
            }
            Err(e) => refused.push((path, e)),
        }
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("file")).unwrap(),
        "host file\n"
    );
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
    assert_eq!(refused.len(), 2, "{refused:?}");
    for (path, e) in refused {
        assert!(e.message().contains("log"), "{path}: {e:?}");
    }
}
