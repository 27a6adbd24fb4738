//! crio-testworld: the test world by hand.
//!
//! `crio-testworld registry` starts a registry with the standard test images
//! and prints their references until interrupted; `crio-testworld pull-bench`
//! measures the pull and unpack of a ~100 MB multi-layer image through a
//! fresh daemon, then of a second image that shares most of its layers.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use crio_api::cri::{ImageSpec, PullImageRequest};
use crio_test::Registry;
use crio_test::image::{BuiltLayer, Compression, Image, Layer, RunConfig};
use crio_test::images::{IMAGE_PATH, busybox_layer, push_standard_images};
use crio_test::world::daemon_for;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("registry") => registry(),
        Some("pull-bench") => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(pull_bench(
                args.get(1).and_then(|n| n.parse().ok()).unwrap_or(3),
            ))
        }
        _ => bail!("usage: crio-testworld registry | pull-bench [SAMPLES]"),
    }
}

fn registry() -> Result<()> {
    let registry = Registry::start()?;
    let images = push_standard_images(&registry)?;
    println!("registry: {} (plain HTTP)", registry.host());
    println!("{images:#?}");
    println!("Ctrl-C to stop");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
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
        let word = x.to_le_bytes();
        out.extend_from_slice(&word[..4]);
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

async fn pull_bench(samples: usize) -> Result<()> {
    let registry = Registry::start()?;
    let config = RunConfig {
        env: vec![IMAGE_PATH.into()],
        cmd: Some(vec!["sh".into()]),
        ..RunConfig::default()
    };
    let mut layers = vec![BuiltLayer::new(busybox_layer()?, Compression::Gzip)];
    layers.extend((1..=4).map(|s| layer(s, 25, 1 << 20)));
    let first =
        Image::new(layers.clone(), config.clone()).push(&registry, "bench/big", "latest")?;
    layers.push(layer(99, 5, 1 << 20));
    let second = Image::new(layers.clone(), config).push(&registry, "bench/big", "second")?;
    let uncompressed: u64 = (4 * 25) << 20;
    let compressed: usize = layers.iter().map(|l| l.blob.len()).sum();
    println!(
        "image: {} layers, {} MiB of files, {:.1} MiB compressed",
        layers.len() - 1,
        uncompressed >> 20,
        compressed as f64 / (1 << 20) as f64
    );
    let mut cold = Vec::new();
    let mut shared = Vec::new();
    for _ in 0..samples {
        let daemon = daemon_for(&registry, "", "", &[])?;
        let mut client = daemon.client().await?;
        for (name, times) in [
            (&first.reference, &mut cold),
            (&second.reference, &mut shared),
        ] {
            let started = Instant::now();
            client
                .image
                .pull_image(PullImageRequest {
                    image: Some(ImageSpec {
                        image: name.clone(),
                        ..ImageSpec::default()
                    }),
                    ..PullImageRequest::default()
                })
                .await?;
            times.push(started.elapsed());
        }
    }
    cold.sort();
    shared.sort();
    println!(
        "pull+unpack cold:   median {:?} (samples {cold:?})",
        cold[cold.len() / 2]
    );
    println!(
        "pull+unpack shared: median {:?} (samples {shared:?})",
        shared[shared.len() / 2]
    );
    Ok(())
}
