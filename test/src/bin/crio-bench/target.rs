//! What every measure uses: the runtimes under measurement, sample
//! statistics, memory figures and the pod and container calls repeated.

use std::time::{Duration, Instant};

use anyhow::Result;
use crio_api::client::{CriClient, connect_with};
use crio_api::cri::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, ListPodSandboxRequest,
    NamespaceMode, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest,
};
use crio_test::containerd::Containerd;
use crio_test::pods::{PodWorld, pod_config};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Sample statistics in milliseconds.
pub(crate) fn stats(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let n = samples.len();
    json!({
        "samples": n,
        "median_ms": ms(samples[n / 2]),
        "p95_ms": ms(samples[((n * 95).div_ceil(100)).saturating_sub(1).min(n - 1)]),
        "max_ms": ms(samples[n - 1]),
    })
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "status", "VmRSS:")
}

/// A `/proc/PID/` memory figure in KiB: `VmRSS:` of `status` or `Pss:` of
/// `smaps_rollup`.
pub(crate) fn proc_kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A runtime under measurement.
pub(crate) enum Target {
    Crio(PodWorld),
    Containerd(Containerd, String),
}

impl Target {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::Crio(_) => "crio-rs",
            Target::Containerd(..) => "containerd",
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        match self {
            Target::Crio(w) => w.daemon.endpoint(),
            Target::Containerd(c, _) => c.endpoint(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        match self {
            Target::Crio(w) => w.daemon.pid(),
            Target::Containerd(c, _) => c.pid(),
        }
        .unwrap_or(0)
    }

    /// Kill -9 and start again.
    pub(crate) fn crash_and_restart(&mut self) -> Result<()> {
        match self {
            Target::Crio(w) => {
                w.daemon.signal_and_wait(Signal::SIGKILL)?;
                w.daemon.spawn()
            }
            Target::Containerd(c, _) => {
                c.signal_and_wait(Signal::SIGKILL)?;
                c.spawn()
            }
        }
    }

    /// RSS and PSS of the per-pod shims summed, KiB (0 when there are none).
    pub(crate) fn shims_memory(&self) -> (u64, u64) {
        self.shims(None)
            .into_iter()
            .map(|pid| (rss_kib(pid), proc_kib(pid, "smaps_rollup", "Pss:")))
            .fold((0, 0), |(r, p), (rss, pss)| (r + rss, p + pss))
    }

    /// The pids of the runtime's shims; with `pod`, of the shim started
    /// for that pod alone (its ID is on the shim's command line).
    pub(crate) fn shims(&self, pod: Option<&str>) -> Vec<u32> {
        let marker = match self {
            Target::Crio(w) => w.daemon.path("").display().to_string(),
            Target::Containerd(c, _) => c.dir().display().to_string(),
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("containerd-shim")
                        && c.contains(&marker)
                        && pod.is_none_or(|p| c.split('\0').any(|arg| arg == p))
                })
            })
            .collect()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Containerd(_, bridge) = self {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", bridge.as_str()])
                .status();
        }
    }
}

/// A client once the runtime answers Status (containerd's CRI plugin
/// initialises after its socket opens).
pub(crate) async fn ready_client(endpoint: &str) -> Result<CriClient> {
    let mut client = connect_with(endpoint, Duration::from_secs(30), None)
        .await
        .map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .runtime
            .status(crio_api::cri::StatusRequest::default())
            .await
        {
            Ok(_) => return Ok(client),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub(crate) async fn run_pod(client: &mut CriClient, name: &str) -> Result<String> {
    let config = pod_config(name, NamespaceMode::Pod as i32, NamespaceMode::Pod as i32);
    Ok(client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id)
}

pub(crate) async fn remove_all(client: &mut CriClient) -> Result<()> {
    for p in client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items
    {
        remove_pod(client, p.id).await?;
    }
    Ok(())
}

/// Stops and removes pod `id`.
pub(crate) async fn remove_pod(client: &mut CriClient, id: String) -> Result<()> {
    client
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
        .await?;
    Ok(())
}

/// A container config running `sleep 3600` from `image`.
fn sleeper(image: &str, name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..ImageSpec::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        ..ContainerConfig::default()
    }
}

/// Creates a `sleep` container named `name` in pod `pod` (made from the
/// config of [`run_pod`]`(pod_name)`); its ID.
pub(crate) async fn create_sleeper(
    c: &mut CriClient,
    pod: &str,
    pod_name: &str,
    image: &str,
    name: &str,
) -> Result<String> {
    Ok(c.runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(sleeper(image, name)),
            // kubelet always sends it; containerd needs it.
            sandbox_config: Some(pod_config(
                pod_name,
                NamespaceMode::Pod as i32,
                NamespaceMode::Pod as i32,
            )),
        })
        .await?
        .into_inner()
        .container_id)
}

/// Starts container `id`.
pub(crate) async fn start_container(c: &mut CriClient, id: &str) -> Result<()> {
    c.runtime
        .start_container(StartContainerRequest {
            container_id: id.to_string(),
        })
        .await?;
    Ok(())
}

/// A pod with a running container: (pod ID, container ID, the time of
/// RunPodSandbox, CreateContainer and StartContainer).
pub(crate) async fn start_pod(
    c: &mut CriClient,
    image: &str,
    name: &str,
) -> Result<(String, String, [Duration; 3])> {
    let t = Instant::now();
    let pod = run_pod(c, name).await?;
    let run = t.elapsed();
    let t = Instant::now();
    let id = create_sleeper(c, &pod, name, image, name).await?;
    let create = t.elapsed();
    let t = Instant::now();
    start_container(c, &id).await?;
    Ok((pod, id, [run, create, t.elapsed()]))
}
