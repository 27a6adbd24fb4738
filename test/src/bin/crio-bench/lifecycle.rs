//! The lifecycle measures: pod calls, containers in pods, throughput with
//! concurrent clients.

use std::time::{Duration, Instant};

use anyhow::Result;
use crio_api::cri::{
    ContainerStatusRequest, ExecSyncRequest, ListContainersRequest, ListPodSandboxRequest,
    RemovePodSandboxRequest, StopPodSandboxRequest,
};
use crio_test::cri::pull;
use serde_json::{Value, json};

use crate::target::{
    Target, ready_client, remove_all, remove_pod, rss_kib, run_pod, start_pod, stats,
};

/// Pod calls one by one, ListPodSandbox with `many` pods, the daemon's
/// memory, and the recovery of `many` pods after a kill -9.
pub(crate) async fn pods(target: &mut Target, samples: usize, many: usize) -> Result<Value> {
    let connect = |t: &Target| {
        let endpoint = t.endpoint();
        async move { ready_client(&endpoint).await }
    };
    let mut client = connect(target).await?;
    // Warm up: first CNI call, first helper or pause image.
    let warm = run_pod(&mut client, "warm").await?;
    remove_pod(&mut client, warm).await?;
    let idle_rss = rss_kib(target.pid());
    let (mut run, mut stop, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples {
        let t = Instant::now();
        let id = run_pod(&mut client, &format!("bench-{i}")).await?;
        run.push(t.elapsed());
        let t = Instant::now();
        client
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
        stop.push(t.elapsed());
        let t = Instant::now();
        client
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await?;
        remove.push(t.elapsed());
    }
    let started = Instant::now();
    for i in 0..many {
        run_pod(&mut client, &format!("many-{i}")).await?;
    }
    let create_many = started.elapsed();
    let many_rss = rss_kib(target.pid());
    let (shims, _) = target.shims_memory();
    let mut list = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        client
            .runtime
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await?;
        list.push(t.elapsed());
    }
    // Recovery: kill -9, restart, time to the first answered ListPodSandbox.
    drop(client);
    let t = Instant::now();
    target.crash_and_restart()?;
    let mut client = connect(target).await?;
    let listed = client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items
        .len();
    let recovery = t.elapsed();
    remove_all(&mut client).await?;
    Ok(json!({
        "run_pod_sandbox": stats(run),
        "stop_pod_sandbox": stats(stop),
        "remove_pod_sandbox": stats(remove),
        format!("list_pod_sandbox_{many}_pods"): stats(list),
        format!("run_{many}_pods_sequential_ms"): create_many.as_millis() as u64,
        "daemon_rss_idle_kib": idle_rss,
        format!("daemon_rss_{many}_pods_kib"): many_rss,
        "shim_rss_per_pod_kib": shims / many.max(1) as u64,
        format!("recovery_{many}_pods_ms"): (recovery.as_secs_f64() * 1e3).round(),
        "recovered_pods": listed,
    }))
}

/// The headline: pod plus running container, call by call; then stop and
/// remove of such a pod; ExecSync and ContainerStatus of a running
/// container; ListContainers and the shims' memory with `loaded` pods each
/// running one container.
pub(crate) async fn containers(
    target: &Target,
    image: &str,
    samples: usize,
    loaded: usize,
) -> Result<Value> {
    let mut client = ready_client(&target.endpoint()).await?;
    pull(&mut client, image).await?;
    let (mut run, mut create, mut start, mut total, mut teardown) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples {
        let (pod, _, [r, c, s]) = start_pod(&mut client, image, &format!("ctr-{i}")).await?;
        run.push(r);
        create.push(c);
        start.push(s);
        total.push(r + c + s);
        let t = Instant::now();
        remove_pod(&mut client, pod).await?;
        teardown.push(t.elapsed());
    }
    let (_, id, _) = start_pod(&mut client, image, "exec").await?;
    let (mut exec, mut status) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let t = Instant::now();
        let r = client
            .runtime
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await?
            .into_inner();
        exec.push(t.elapsed());
        anyhow::ensure!(r.exit_code == 0, "ExecSync of true exited {}", r.exit_code);
        let t = Instant::now();
        client
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await?;
        status.push(t.elapsed());
    }
    for i in 0..loaded {
        start_pod(&mut client, image, &format!("loaded-{i}")).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss, pss) = target.shims_memory();
    let mut list = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        let listed = client
            .runtime
            .list_containers(ListContainersRequest::default())
            .await?
            .into_inner()
            .containers
            .len();
        list.push(t.elapsed());
        anyhow::ensure!(listed == loaded + 1, "listed {listed} containers");
    }
    remove_all(&mut client).await?;
    let sum_of_medians = |v: &[&Value]| {
        v.iter()
            .filter_map(|s| s["median_ms"].as_f64())
            .sum::<f64>()
    };
    let (run, create, start) = (stats(run), stats(create), stats(start));
    let headline = (sum_of_medians(&[&run, &create, &start]) * 1000.0).round() / 1000.0;
    let pods = loaded as u64 + 1;
    Ok(json!({
        "run_pod_sandbox": run,
        "create_container": create,
        "start_container": start,
        "pod_and_container_sum_of_medians_ms": headline,
        "pod_and_container_total": stats(total),
        "stop_and_remove_pod_with_container": stats(teardown),
        "exec_sync": stats(exec),
        "container_status": stats(status),
        format!("list_containers_{pods}_containers"): stats(list),
        "shim_rss_per_pod_with_container_kib": rss / pods,
        "shim_pss_per_pod_with_container_kib": pss / pods,
    }))
}

/// Throughput: `pods` pods with a running container each, made by each
/// number of concurrent clients (one connection each) in `concurrency`.
pub(crate) async fn throughput(
    target: &Target,
    image: &str,
    pods: usize,
    concurrency: &[usize],
) -> Result<Value> {
    pull(&mut ready_client(&target.endpoint()).await?, image).await?;
    let mut out = serde_json::Map::new();
    for &n in concurrency {
        let mut clients = Vec::new();
        for _ in 0..n {
            clients.push(ready_client(&target.endpoint()).await?);
        }
        let (t, cpu) = (Instant::now(), busy_cpu());
        perf_control("enable");
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(c, mut client)| {
                let image = image.to_string();
                tokio::spawn(async move {
                    for i in (c..pods).step_by(n) {
                        start_pod(&mut client, &image, &format!("tp{n}-{i}")).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = busy_cpu() - cpu;
        perf_control("disable");
        out.insert(
            format!("pods_per_s_{pods}_pods_{n}_clients"),
            json!((pods as f64 / secs * 10.0).round() / 10.0),
        );
        out.insert(
            format!("cpu_ms_per_pod_{n}_clients"),
            json!((cpu.as_secs_f64() * 1e3 / pods as f64).round()),
        );
        remove_all(&mut ready_client(&target.endpoint()).await?).await?;
    }
    Ok(Value::Object(out))
}

/// CPU time the whole machine spent busy since boot (every process,
/// kernel included), from /proc/stat.
fn busy_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        .filter(|(i, _)| ![3, 4].contains(i) && *i < 8)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // USER_HZ: 100 on every Linux architecture this runs on.
    Duration::from_millis(ticks * 10)
}

/// With `CRIO_BENCH_PERF_CTL` naming the control FIFO of `perf record
/// --control fifo:PATH -D -1`, profiles only the measured windows.
pub(crate) fn perf_control(command: &str) {
    if let Some(path) = std::env::var_os("CRIO_BENCH_PERF_CTL") {
        let _ = std::fs::write(path, format!("{command}\n"));
    }
}
