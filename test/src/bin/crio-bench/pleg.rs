//! PLEG under churn: what the kubelet's pod lifecycle event generator sees
//! on a busy node. Many containers run, one pod's shim is stopped (SIGSTOP,
//! a stand-in for a shim stuck in the kernel), and pods are created and
//! removed in the background while ListContainers and ContainerStatus are
//! timed. The kubelet marks the node NotReady when these calls stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crio_api::client::CriClient;
use crio_api::cri::{ContainerStatusRequest, ListContainersRequest};
use crio_test::cri::pull;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::target::{
    Target, create_sleeper, ready_client, remove_all, remove_pod, run_pod, start_container,
};

/// A call that has not answered after this long is counted as timed out
/// (and its sample is this long): a stalled call must not stall the bench.
const CALL_CAP: Duration = Duration::from_secs(2);

/// One ListContainers and one ContainerStatus per tick, about as often as
/// a kubelet with a few hundred containers asks, so the samples spread over
/// the background churn (500 samples: 10 s).
const TICK: Duration = Duration::from_millis(20);

/// The size of the scenario.
pub(crate) struct Scale {
    /// Pods with running containers.
    pub(crate) pods: usize,
    /// Containers in each.
    pub(crate) per_pod: usize,
    /// Timed calls of each kind.
    pub(crate) samples: usize,
}

/// Continues a stopped process when dropped, whatever happened meanwhile.
struct Stopped(Pid);

impl Stopped {
    fn stop(pid: u32) -> Result<Self> {
        let pid = Pid::from_raw(pid as i32);
        kill(pid, Signal::SIGSTOP).context("SIGSTOP the shim")?;
        Ok(Self(pid))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// Percentiles of `samples` (time, answered with success) in
/// milliseconds, how many hit the cap and how many failed.
fn percentiles(samples: Vec<(Duration, bool)>) -> Value {
    let failed = samples.iter().filter(|(_, ok)| !ok).count();
    let mut times: Vec<Duration> = samples.into_iter().map(|(t, _)| t).collect();
    times.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let n = times.len();
    let at = |p: usize| times[(n * p).div_ceil(100).saturating_sub(1).min(n - 1)];
    json!({
        "samples": n,
        "median_ms": ms(at(50)),
        "p99_ms": ms(at(99)),
        "max_ms": ms(times[n - 1]),
        "timed_out": times.iter().filter(|d| **d >= CALL_CAP).count(),
        "failed": failed,
    })
}

/// The time of `call`, capped at [`CALL_CAP`], and whether it succeeded.
async fn timed<T, E>(call: impl std::future::Future<Output = Result<T, E>>) -> (Duration, bool) {
    let t = Instant::now();
    let ok = matches!(tokio::time::timeout(CALL_CAP, call).await, Ok(Ok(_)));
    (t.elapsed(), ok)
}

/// A pod named `name` with `count` running `sleep` containers; their IDs.
async fn pod_with(
    c: &mut CriClient,
    image: &str,
    name: &str,
    count: usize,
) -> Result<(String, Vec<String>)> {
    let pod = run_pod(c, name).await?;
    let mut ids = Vec::new();
    for i in 0..count {
        let id = create_sleeper(c, &pod, name, image, &format!("c{i}")).await?;
        start_container(c, &id).await?;
        ids.push(id);
    }
    Ok((pod, ids))
}

/// Creates and removes pods (with one container each) until `done`; how
/// many it made. Errors are counted, not fatal: the point is the load.
async fn churn(mut c: CriClient, image: String, done: Arc<AtomicBool>) -> (usize, usize) {
    let (mut made, mut failed) = (0, 0);
    while !done.load(Ordering::Relaxed) {
        let name = format!("churn-{made}-{failed}");
        let cycle = async {
            let (pod, _) = pod_with(&mut c, &image, &name, 1).await?;
            remove_pod(&mut c, pod).await
        };
        match cycle.await {
            Ok(()) => made += 1,
            Err(_) => failed += 1,
        }
    }
    (made, failed)
}

/// The scenario on `target`: p50/p99 of ListContainers and ContainerStatus
/// (every container in turn, the stopped pod's among them).
pub(crate) async fn pleg(target: &Target, image: &str, scale: &Scale) -> Result<Value> {
    let mut client = ready_client(&target.endpoint()).await?;
    pull(&mut client, image).await?;
    let mut pods = Vec::new();
    let mut all = Vec::new();
    for p in 0..scale.pods {
        let (pod, ids) = pod_with(&mut client, image, &format!("pleg-{p}"), scale.per_pod).await?;
        pods.push(pod);
        all.extend(ids);
    }
    let shim = *target
        .shims(Some(&pods[0]))
        .first()
        .context("no shim found for the first pod")?;
    let done = Arc::new(AtomicBool::new(false));
    let background = tokio::spawn(churn(
        ready_client(&target.endpoint()).await?,
        image.to_string(),
        done.clone(),
    ));
    let listed = AtomicUsize::new(0);
    let (mut list, mut status) = (Vec::new(), Vec::new());
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    {
        let _stopped = Stopped::stop(shim)?;
        for i in 0..scale.samples {
            ticks.tick().await;
            list.push(
                timed(async {
                    let r = client
                        .runtime
                        .list_containers(ListContainersRequest::default())
                        .await?;
                    listed.store(r.into_inner().containers.len(), Ordering::Relaxed);
                    Ok::<_, tonic::Status>(())
                })
                .await,
            );
            let id = all[i % all.len()].clone();
            status.push(
                timed(client.runtime.container_status(ContainerStatusRequest {
                    container_id: id,
                    verbose: false,
                }))
                .await,
            );
        }
    }
    done.store(true, Ordering::Relaxed);
    let (churned, churn_failed) = background.await?;
    remove_all(&mut client).await?;
    Ok(json!({
        "containers": all.len(),
        "pods": scale.pods,
        "containers_listed_last": listed.load(Ordering::Relaxed),
        "churned_pods": churned,
        "churn_failures": churn_failed,
        "list_containers": percentiles(list),
        "container_status": percentiles(status),
    }))
}
