//! Image pulls: a ~100 MB image cold, then one sharing all but a layer.

use std::time::Instant;

use anyhow::Result;
use crio_test::Registry;
use crio_test::containerd::Containerd;
use crio_test::cri::pull;
use crio_test::image::{BuiltLayer, Compression, Image, Layer, RunConfig};
use crio_test::images::{IMAGE_PATH, busybox_layer};
use crio_test::world::daemon_for;
use serde_json::{Value, json};

use crate::target::{Target, ready_client, stats};

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
pub(crate) async fn images(
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
