//! Fault injection: the daemon is killed (SIGKILL) at random moments while
//! a client runs pod and container life cycles and pulls, restarted, and
//! the work retried. At the end, after every pod is removed, the records,
//! shims, mounts, namespaces, cgroups and processes must all agree that
//! nothing is left. The seed is printed; `CRIO_FAULT_SEED=N` replays it.

use std::time::{Duration, Instant};

use crio_api::client::CriClient;
use crio_api::cri::{
    ListPodSandboxRequest, NamespaceMode, RemoveContainerRequest, RemovePodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use crio_test::containers::{container, setup};
use crio_test::pods::{pod_config, test_cgroup_parent};
use nix::sys::signal::Signal;

const POD: i32 = NamespaceMode::Pod as i32;

/// xorshift64*: enough randomness, and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One life cycle: a pod, a container started, stopped and removed, the
/// pod removed; and a pull. Any step may fail when the daemon dies.
async fn life_cycle(mut c: CriClient, name: String, image: String) -> Result<(), tonic::Status> {
    crio_test::cri::pull(&mut c, &image).await?;
    let pod = c
        .runtime
        .run_pod_sandbox(crio_api::cri::RunPodSandboxRequest {
            config: Some(pod_config(&name, POD, POD)),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let id = c
        .runtime
        .create_container(crio_api::cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container("work", &image, &["sleep", "1000"])),
            sandbox_config: Some(pod_config(&name, POD, POD)),
        })
        .await?
        .into_inner()
        .container_id;
    c.runtime
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    c.runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;
    c.runtime
        .remove_container(RemoveContainerRequest { container_id: id })
        .await?;
    c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    Ok(())
}

/// Removes every pod and container the daemon lists (the kubelet's
/// clean-up after a restart); every call must succeed.
async fn clean_up(c: &mut CriClient) {
    let containers = crio_test::containers::list_containers(c).await;
    for ctr in containers {
        c.runtime
            .stop_container(StopContainerRequest {
                container_id: ctr.id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        c.runtime
            .remove_container(RemoveContainerRequest {
                container_id: ctr.id,
            })
            .await
            .unwrap();
    }
    let pods = c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    for p in pods {
        c.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap();
        c.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            })
            .await
            .unwrap();
    }
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_random_the_daemon_recovers_and_leaks_nothing() {
    let seed = std::env::var("CRIO_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fault injection seed: {seed} (replay with CRIO_FAULT_SEED={seed})");
    let mut rng = Rng(seed);
    let mut s = setup().await;
    let image = s.images.busybox.reference.clone();
    for round in 0..12 {
        let client = s.world.daemon.client().await.unwrap();
        let work = tokio::spawn(life_cycle(client, format!("fault{round}"), image.clone()));
        tokio::time::sleep(Duration::from_millis(rng.below(250))).await;
        s.world.daemon.signal_and_wait(Signal::SIGKILL).unwrap();
        let _ = work.await.unwrap();
        s.world.daemon.spawn().unwrap();
        // The retry: the same life cycle again, to its end.
        let client = s.world.daemon.client().await.unwrap();
        let retried = life_cycle(client, format!("fault{round}"), image.clone()).await;
        if let Err(e) = retried {
            // A name still held by what the killed attempt made: clean up
            // as the kubelet would, then the retry must work.
            let mut c = s.world.daemon.client().await.unwrap();
            clean_up(&mut c).await;
            let client = s.world.daemon.client().await.unwrap();
            life_cycle(client, format!("fault{round}"), image.clone())
                .await
                .unwrap_or_else(|e2| panic!("seed {seed} round {round}: {e} then {e2}"));
        }
    }
    let mut c = s.world.daemon.client().await.unwrap();
    clean_up(&mut c).await;

    // Everything agrees that nothing is left.
    let d = &s.world.daemon;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shims: Vec<i32> =
            crio_test::daemon::processes_mentioning(&d.path("").display().to_string())
                .into_iter()
                .filter(|p| Some(*p as u32) != d.pid())
                .collect();
        if shims.is_empty() {
            break;
        }
        let described: Vec<String> = shims
            .iter()
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "seed {seed}: processes left: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for rel in ["root/containers", "run/containers", "ns"] {
        let left = entries(&d.path(rel));
        assert!(left.is_empty(), "seed {seed}: {rel} still holds {left:?}");
    }
    let pods = entries(&d.path("root/pods"));
    assert!(
        pods.iter().all(|p| !p.ends_with(".json")),
        "seed {seed}: pod records left: {pods:?}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = d.path("").display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
    assert!(left.is_empty(), "seed {seed}: mounts left: {left:?}");
    let memory = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(test_cgroup_parent().trim_start_matches('/'));
    let cgroups: Vec<String> = std::fs::read_dir(&memory)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(cgroups.is_empty(), "seed {seed}: cgroups left: {cgroups:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_on_one_container_are_serialised() {
    let mut s = setup().await;
    let image = s.images.busybox.reference.clone();
    let pod = crio_test::containers::run_pod(&mut s.client, pod_config("racy", POD, POD)).await;
    let id = crio_test::containers::create(
        &mut s.client,
        &pod,
        container("racy", &image, &["sleep", "1000"]),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;
    let mut calls = Vec::new();
    for i in 0..12 {
        let mut c = s.client.clone();
        let id = id.clone();
        calls.push(tokio::spawn(async move {
            match i % 3 {
                0 => c
                    .runtime
                    .stop_container(StopContainerRequest {
                        container_id: id,
                        timeout: 0,
                    })
                    .await
                    .map(|_| ()),
                1 => c
                    .runtime
                    .remove_container(RemoveContainerRequest { container_id: id })
                    .await
                    .map(|_| ()),
                _ => match c
                    .runtime
                    .container_status(crio_api::cri::ContainerStatusRequest {
                        container_id: id,
                        verbose: false,
                    })
                    .await
                {
                    Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
                    other => other.map(|_| ()),
                },
            }
        }));
    }
    for call in calls {
        call.await
            .unwrap()
            .expect("stop and remove are idempotent, status NotFound at worst");
    }
    let left = crio_test::containers::list_containers(&mut s.client).await;
    assert!(left.is_empty(), "{left:?}");
    assert!(entries(&s.world.daemon.path("run/containers")).is_empty());
    crio_test::containers::remove_pod(&mut s.client, &pod).await;
}
