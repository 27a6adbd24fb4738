//! crio-bench: measures crio-rs through its CRI socket with an in-process
//! client: pod and container lifecycle calls, ExecSync, listing, throughput
//! with concurrent clients, image pull and unpack, daemon and shim memory,
//! and recovery time. Prints a JSON document (and a markdown table with
//! `--markdown`, an SVG chart with `--svg FILE`). `--with-containerd` measures
//! Debian's containerd the same way; `--render FILE` re-renders a saved run;
//! `--smoke` takes a few samples, for CI; `--daemon-log FILE` keeps the
//! crio-rs daemon's log (per-step timings at debug level).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use crio_api::client::{CriClient, connect_with};
use crio_api::cri::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, ListContainersRequest, ListPodSandboxRequest, NamespaceMode,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use crio_test::Registry;
use crio_test::containerd::Containerd;
use crio_test::cri::pull;
use crio_test::image::{BuiltLayer, Compression, Image, Layer, RunConfig};
use crio_test::images::{IMAGE_PATH, busybox_layer, push_standard_images};
use crio_test::pods::{PodWorld, bridge_conflist, pod_config};
use crio_test::world::daemon_for;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Sample statistics in milliseconds.
fn stats(mut samples: Vec<Duration>) -> Value {
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

fn rss_kib(pid: u32) -> u64 {
    proc_kib(pid, "status", "VmRSS:")
}

/// A `/proc/PID/` memory figure in KiB: `VmRSS:` of `status` or `Pss:` of
/// `smaps_rollup`.
fn proc_kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A runtime under measurement.
enum Target {
    Crio(PodWorld),
    Containerd(Containerd, String),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Crio(_) => "crio-rs",
            Target::Containerd(..) => "containerd",
        }
    }

    fn endpoint(&self) -> String {
        match self {
            Target::Crio(w) => w.daemon.endpoint(),
            Target::Containerd(c, _) => c.endpoint(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Target::Crio(w) => w.daemon.pid(),
            Target::Containerd(c, _) => c.pid(),
        }
        .unwrap_or(0)
    }

    /// Kill -9 and start again.
    fn crash_and_restart(&mut self) -> Result<()> {
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
    fn shims_memory(&self) -> (u64, u64) {
        let marker = match self {
            Target::Crio(w) => w.daemon.path("").display().to_string(),
            Target::Containerd(c, _) => c.dir().display().to_string(),
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return (0, 0);
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c);
                        c.contains("containerd-shim") && c.contains(&marker)
                    })
                    .unwrap_or(false)
            })
            .map(|pid| (rss_kib(pid), proc_kib(pid, "smaps_rollup", "Pss:")))
            .fold((0, 0), |(r, p), (rss, pss)| (r + rss, p + pss))
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
async fn ready_client(endpoint: &str) -> Result<CriClient> {
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

async fn run_pod(client: &mut CriClient, name: &str) -> Result<String> {
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

async fn remove_all(client: &mut CriClient) -> Result<()> {
    for p in client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items
    {
        client
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await?;
        client
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            })
            .await?;
    }
    Ok(())
}

async fn pods(target: &mut Target, samples: usize, many: usize) -> Result<Value> {
    let connect = |t: &Target| {
        let endpoint = t.endpoint();
        async move { ready_client(&endpoint).await }
    };
    let mut client = connect(target).await?;
    // Warm up: first CNI call, first helper or pause image.
    let warm = run_pod(&mut client, "warm").await?;
    client
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: warm.clone(),
        })
        .await?;
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: warm,
        })
        .await?;
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

/// A pod with a running container: (pod ID, container ID, the time of
/// RunPodSandbox, CreateContainer and StartContainer).
async fn start_pod(
    c: &mut CriClient,
    image: &str,
    name: &str,
) -> Result<(String, String, [Duration; 3])> {
    let t = Instant::now();
    let pod = run_pod(c, name).await?;
    let run = t.elapsed();
    let t = Instant::now();
    let id = c
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(sleeper(image, name)),
            // kubelet always sends it; containerd needs it.
            sandbox_config: Some(pod_config(
                name,
                NamespaceMode::Pod as i32,
                NamespaceMode::Pod as i32,
            )),
        })
        .await?
        .into_inner()
        .container_id;
    let create = t.elapsed();
    let t = Instant::now();
    c.runtime
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    Ok((pod, id, [run, create, t.elapsed()]))
}

/// The headline: pod plus running container, call by call; then stop and
/// remove of such a pod; ExecSync and ContainerStatus of a running
/// container; ListContainers and the shims' memory with `loaded` pods each
/// running one container.
async fn containers(target: &Target, image: &str, samples: usize, loaded: usize) -> Result<Value> {
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
        client
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
        client
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await?;
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
async fn throughput(
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
fn perf_control(command: &str) {
    if let Some(path) = std::env::var_os("CRIO_BENCH_PERF_CTL") {
        let _ = std::fs::write(path, format!("{command}\n"));
    }
}

/// `n` bytes that compress about 2:1, like typical image content.
fn filler(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes()[..4]);
        out.extend_from_slice(&[b'a'; 4]);
    }
    out.truncate(n);
    out
}

fn layer(seed: u64, files: usize, file_size: usize) -> BuiltLayer {
    let mut l = Layer::new().dir("data", 0o755);
    for i in 0..files {
        l = l.file(
            &format!("data/{seed}-{i}.bin"),
            0o644,
            &filler(file_size, seed * 1000 + i as u64),
        );
    }
    BuiltLayer::new(l, Compression::Gzip)
}

/// Pull and unpack of a ~100 MB image, then of one sharing all but one
/// layer, each sample on a fresh daemon of the target's kind.
async fn images(
    target: &Target,
    registry: &Registry,
    samples: usize,
    files_per_layer: usize,
) -> Result<Value> {
    let config = RunConfig {
        env: vec![IMAGE_PATH.into()],
        cmd: Some(vec!["sh".into()]),
        ..RunConfig::default()
    };
    let mut layers = vec![BuiltLayer::new(busybox_layer()?, Compression::Gzip)];
    layers.extend((1..=4).map(|s| layer(s, files_per_layer, 1 << 20)));
    let first = Image::new(layers.clone(), config.clone()).push(registry, "bench/big", "latest")?;
    layers.push(layer(99, 5, 1 << 20));
    let second = Image::new(layers.clone(), config).push(registry, "bench/big", "second")?;
    let compressed: usize = layers[..5].iter().map(|l| l.blob.len()).sum();
    let (mut cold, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        // Kept alive for the sample; dropped (stopped, cleaned) after it.
        let (_crio, _containerd, mut client) = match target {
            Target::Crio(_) => {
                let d = daemon_for(registry, "", "", &[])?;
                let c = d.client().await?;
                (Some(d), None, c)
            }
            Target::Containerd(..) => {
                let ctrd = Containerd::start(&registry.host(), "unused/pause:1", "{}")?;
                let c = ready_client(&ctrd.endpoint()).await?;
                (None, Some(ctrd), c)
            }
        };
        let t = Instant::now();
        pull(&mut client, &first.reference).await?;
        cold.push(t.elapsed());
        let t = Instant::now();
        pull(&mut client, &second.reference).await?;
        shared.push(t.elapsed());
    }
    Ok(json!({
        "image_mib_uncompressed": 4 * files_per_layer,
        "image_mib_compressed": (compressed as f64 / (1 << 20) as f64 * 10.0).round() / 10.0,
        "pull_cold": stats(cold),
        "pull_sharing_layers": stats(shared),
    }))
}

/// Each measure as one number: the median for timed ones.
fn flatten(v: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (section, m) in v.as_object().into_iter().flatten() {
        for (k, x) in m.as_object().into_iter().flatten() {
            let n = x.get("median_ms").unwrap_or(x).as_f64();
            if let Some(n) = n {
                let unit = if x.get("median_ms").is_some() {
                    " (median ms)"
                } else {
                    ""
                };
                out.insert(format!("{section}.{k}{unit}"), n);
            }
        }
    }
    out
}

/// A markdown table of every measure, both runtimes side by side.
fn markdown(results: &Value) -> String {
    let ours = flatten(&results["crio-rs"]);
    let reference = flatten(&results["containerd"]);
    let mut out = String::from(
        "| measure | crio-rs | containerd | containerd / crio-rs |\n|---|---|---|---|\n",
    );
    for (k, v) in &ours {
        let (theirs, ratio) = match reference.get(k) {
            Some(r) if *v > 0.0 => (format!("{r}"), format!("{:.2}", r / v)),
            Some(r) => (format!("{r}"), "-".into()),
            None => ("-".into(), "-".into()),
        };
        out += &format!("| {k} | {v} | {theirs} | {ratio} |\n");
    }
    for note in results["notes"].as_array().into_iter().flatten() {
        out += &format!("\nNote: {}\n", note.as_str().unwrap_or_default());
    }
    out
}

/// A horizontal bar chart (SVG) of the timed measures, both runtimes.
fn svg(results: &Value) -> String {
    let ours = flatten(&results["crio-rs"]);
    let reference = flatten(&results["containerd"]);
    let rows: Vec<(&String, f64, Option<f64>)> = ours
        .iter()
        .filter(|(k, _)| k.ends_with("(median ms)"))
        .map(|(k, v)| (k, *v, reference.get(k).copied()))
        .collect();
    let max = rows
        .iter()
        .map(|(_, a, b)| a.max(b.unwrap_or(0.0)))
        .fold(1.0, f64::max);
    let (label_w, bar_w, row_h) = (330.0, 420.0, 34.0);
    let height = 40.0 + row_h * rows.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect x=\"{label_w}\" y=\"8\" width=\"12\" height=\"10\" fill=\"#2b7bb9\"/><text x=\"{}\" y=\"17\">crio-rs</text>\n\
         <rect x=\"{}\" y=\"8\" width=\"12\" height=\"10\" fill=\"#bbbbbb\"/><text x=\"{}\" y=\"17\">containerd</text>\n",
        label_w + bar_w + 90.0,
        label_w + 16.0,
        label_w + 90.0,
        label_w + 106.0
    );
    for (i, (name, a, b)) in rows.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let label = name.trim_end_matches(" (median ms)");
        out += &format!("<text x=\"0\" y=\"{}\">{label}</text>\n", y + 14.0);
        for (j, (value, color)) in [(Some(*a), "#2b7bb9"), (*b, "#bbbbbb")]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = value {
                let w = (v / max * bar_w).max(1.0);
                let by = y + j as f64 * 13.0;
                out += &format!(
                    "<rect x=\"{label_w}\" y=\"{by}\" width=\"{w:.1}\" height=\"11\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{}\">{v} ms</text>\n",
                    label_w + w + 4.0,
                    by + 10.0
                );
            }
        }
    }
    out + "</svg>\n"
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    // Render a saved run instead of measuring.
    if let Some(saved) = option("--render") {
        let results: Value = serde_json::from_str(&std::fs::read_to_string(saved)?)?;
        if let Some(path) = option("--svg") {
            std::fs::write(path, svg(&results))?;
        }
        print!("{}", markdown(&results));
        return Ok(());
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    // `--only pods,throughput` measures those groups alone (all by default).
    let only = option("--only").cloned();
    let wanted = |group: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|g| g == group))
    };
    let (samples, many, files) = if smoke { (3, 5, 2) } else { (20, 100, 25) };
    let mut results = json!({
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()},
    });
    // As on a node, where /run is a tmpfs.
    crio_test::daemon::keep_volatile_state_on_tmpfs();
    // Images (and the reference's pause image) come from a registry of the bench's own.
    let registry = Registry::start()?;
    let standard = push_standard_images(&registry)?;
    let mut targets = vec![Target::Crio(PodWorld::start_with_registry(&registry)?)];
    if args.iter().any(|a| a == "--with-containerd") {
        let pid = std::process::id();
        let bridge = format!("ctrd{}", pid % 1_000_000);
        let prefix = format!("10.{}.{}", 100 + (pid / 250) % 100, (pid + 125) % 250);
        let conflist = bridge_conflist(&bridge, &prefix);
        targets.push(Target::Containerd(
            Containerd::start(&registry.host(), &standard.pause.reference, &conflist)?,
            bridge,
        ));
    }
    // What the reference cannot do here, said rather than skipped.
    let mut notes = Vec::new();
    if targets.len() > 1 {
        notes.push(
            "containerd runs with restrict_oom_score_adj = true: this host lacks CAP_SYS_RESOURCE, \
             so containers' oom_score_adj cannot go below containerd's own",
        );
    }
    for note in &notes {
        eprintln!("note: {note}");
    }
    results["notes"] = json!(notes);
    for mut target in targets {
        let name = target.name();
        results[name] = json!({});
        if wanted("pods") {
            eprintln!("measuring {name} pods...");
            results[name]["pods"] = pods(&mut target, samples, many).await?;
        }
        if wanted("containers") {
            eprintln!("measuring {name} containers...");
            results[name]["containers"] =
                containers(&target, &standard.busybox.reference, samples, many).await?;
        }
        if wanted("throughput") {
            eprintln!("measuring {name} throughput...");
            let (pods, mut concurrency) = if smoke {
                (4, vec![1, 2])
            } else {
                (50, vec![1, 5, 10])
            };
            // `--clients 10` measures with that many clients alone.
            if let Some(n) = option("--clients") {
                concurrency = vec![n.parse()?];
            }
            results[name]["throughput"] =
                throughput(&target, &standard.busybox.reference, pods, &concurrency).await?;
        }
        if wanted("images") {
            eprintln!("measuring {name} pulls...");
            results[name]["images"] =
                images(&target, &registry, if smoke { 1 } else { 5 }, files).await?;
        }
        // The daemon's log holds its per-step timings (debug level).
        if let (Target::Crio(w), Some(path)) = (&target, option("--daemon-log")) {
            std::fs::write(path, w.daemon.log())?;
        }
    }
    println!("{}", serde_json::to_string_pretty(&results)?);
    if let Some(path) = option("--svg") {
        std::fs::write(path, svg(&results))?;
    }
    if args.iter().any(|a| a == "--markdown") {
        eprintln!("{}", markdown(&results));
    }
    Ok(())
}
