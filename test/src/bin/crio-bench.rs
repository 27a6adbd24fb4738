//! crio-bench: measures crio-rs through its CRI socket with an in-process
//! client: pod lifecycle calls, listing, image pull and unpack, daemon memory
//! and recovery time. Prints a JSON document (and a markdown table with
//! `--markdown`). `--smoke` takes a few samples, for CI.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crio_api::client::CriClient;
use crio_api::cri::{
    ListPodSandboxRequest, NamespaceMode, RemovePodSandboxRequest, RunPodSandboxRequest,
    StopPodSandboxRequest,
};
use crio_test::Registry;
use crio_test::cri::pull;
use crio_test::image::{BuiltLayer, Compression, Image, Layer, RunConfig};
use crio_test::images::{IMAGE_PATH, busybox_layer};
use crio_test::pods::{PodWorld, pod_config};
use crio_test::world::daemon_for;
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
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
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

async fn pods(samples: usize, many: usize) -> Result<Value> {
    let mut world = PodWorld::start()?;
    let mut client = world.daemon.client().await?;
    let pid = world.daemon.pid().context("daemon pid")?;
    // Warm up: first CNI call, first helper exec.
    let warm = run_pod(&mut client, "warm").await?;
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: warm,
        })
        .await?;
    let idle_rss = rss_kib(pid);
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
    let many_rss = rss_kib(pid);
    let mut list = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        client
            .runtime
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await?;
        list.push(t.elapsed());
    }
    // Recovery: kill, restart, time to the first answered ListPodSandbox.
    drop(client);
    world
        .daemon
        .signal_and_wait(nix::sys::signal::Signal::SIGKILL)?;
    let t = Instant::now();
    world.daemon.spawn()?;
    let mut client = world.daemon.client().await?;
    let listed = client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items
        .len();
    let recovery = t.elapsed();
    let out = world.daemon.crioctl(&["rmp", "--all", "--force"])?;
    anyhow::ensure!(
        out.status.success(),
        "rmp --all: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(json!({
        "run_pod_sandbox": stats(run),
        "stop_pod_sandbox": stats(stop),
        "remove_pod_sandbox": stats(remove),
        format!("list_pod_sandbox_{many}_pods"): stats(list),
        format!("run_{many}_pods_sequential_ms"): create_many.as_millis() as u64,
        "daemon_rss_idle_kib": idle_rss,
        format!("daemon_rss_{many}_pods_kib"): many_rss,
        format!("recovery_{many}_pods_ms"): (recovery.as_secs_f64() * 1e3).round(),
        "recovered_pods": listed,
    }))
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

async fn images(samples: usize, files_per_layer: usize) -> Result<Value> {
    let registry = Registry::start()?;
    let config = RunConfig {
        env: vec![IMAGE_PATH.into()],
        cmd: Some(vec!["sh".into()]),
        ..RunConfig::default()
    };
    let mut layers = vec![BuiltLayer::new(busybox_layer()?, Compression::Gzip)];
    layers.extend((1..=4).map(|s| layer(s, files_per_layer, 1 << 20)));
    let first =
        Image::new(layers.clone(), config.clone()).push(&registry, "bench/big", "latest")?;
    layers.push(layer(99, 5, 1 << 20));
    let second = Image::new(layers.clone(), config).push(&registry, "bench/big", "second")?;
    let compressed: usize = layers[..5].iter().map(|l| l.blob.len()).sum();
    let (mut cold, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let daemon = daemon_for(&registry, "", "", &[])?;
        let mut client = daemon.client().await?;
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

fn markdown(results: &Value) -> String {
    let mut rows = BTreeMap::new();
    for (section, v) in results.as_object().into_iter().flatten() {
        for (k, m) in v.as_object().into_iter().flatten() {
            let text = match m.get("median_ms") {
                Some(med) => format!(
                    "{med} ms median, {} ms p95 ({} samples)",
                    m["p95_ms"], m["samples"]
                ),
                None => m.to_string(),
            };
            rows.insert(format!("{section}.{k}"), text);
        }
    }
    let mut out = String::from("| measure | crio-rs |\n|---|---|\n");
    for (k, v) in rows {
        if v != "null" {
            out += &format!("| {k} | {v} |\n");
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let (samples, many, files) = if smoke { (3, 5, 2) } else { (20, 100, 25) };
    let results = json!({
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()},
        "pods": pods(samples, many).await?,
        "images": images(if smoke { 1 } else { 5 }, files).await?,
    });
    println!("{}", serde_json::to_string_pretty(&results)?);
    if args.iter().any(|a| a == "--markdown") {
        eprintln!("{}", markdown(&results));
    }
    Ok(())
}
