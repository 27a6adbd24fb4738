//! The standard test images, built from Debian's busybox-static and pushed to
//! a test registry: a busybox base, a multi-layer image with whiteouts, opaque
//! directories and links, variants for USER, ENTRYPOINT/CMD, ENV/WORKDIR and
//! VOLUME, and a pause-like image.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::image::{BuiltLayer, Compression, Flavour, Image, Layer, Pushed, RunConfig};
use crate::registry::Registry;

/// Where busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The PATH the images set.
pub const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// uid/gid of the unprivileged user the images define.
pub const TEST_UID: u32 = 1000;

/// The base layer: busybox, a symlink per applet, /etc/passwd and /etc/group.
pub fn busybox_layer() -> Result<Layer> {
    let binary = std::fs::read(BUSYBOX)
        .with_context(|| format!("read {BUSYBOX} (install busybox-static)"))?;
    let out = Command::new(BUSYBOX).arg("--list-full").output()?;
    if !out.status.success() {
        bail!("{BUSYBOX} --list-full failed");
    }
    let mut layer = Layer::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("home", 0o755),
        ("tmp", 0o1777),
        ("var", 0o755),
        ("run", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
    ] {
        layer = layer.dir(dir, mode);
    }
    layer = layer
        .file("bin/busybox", 0o755, &binary)
        .file(
            "etc/passwd",
            0o644,
            format!(
                "root:x:0:0:root:/root:/bin/sh\ntester:x:{TEST_UID}:{TEST_UID}:tester:/home/tester:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
            )
            .as_bytes(),
        )
        .file(
            "etc/group",
            0o644,
            format!("root:x:0:\ntester:x:{TEST_UID}:\naudio:x:29:tester\nnogroup:x:65534:\n")
                .as_bytes(),
        )
        .dir("home/tester", 0o755);
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let path = applet.trim().trim_start_matches('/');
        if path.is_empty() || path == "bin/busybox" {
            continue;
        }
        layer = layer.symlink(path, "/bin/busybox");
    }
    Ok(layer)
}

/// References of the standard images in one registry.
#[derive(Debug, Clone)]
pub struct StandardImages {
    /// busybox alone; `CMD ["sh"]`.
    pub busybox: Pushed,
    /// Three layers: base, files, then whiteouts/opaque dir/replacements.
    pub whiteout: Pushed,
    /// `USER tester` (uid 1000).
    pub user: Pushed,
    /// `ENTRYPOINT ["/bin/echo", "entry"]`, `CMD ["from-cmd"]`.
    pub entrypoint: Pushed,
    /// `ENV GREETING=hello`, `WORKDIR /work`, `STOPSIGNAL SIGUSR1`, Docker
    /// schema 2 manifest.
    pub env: Pushed,
    /// `VOLUME /data`.
    pub volume: Pushed,
    /// `/pause`: sleeps until SIGTERM or SIGINT, then exits 0.
    pub pause: Pushed,
}

/// The second layer of the whiteout image.
pub fn whiteout_lower() -> Layer {
    Layer::new()
        .dir("data", 0o755)
        .file("data/keep.txt", 0o644, b"keep\n")
        .file("data/gone.txt", 0o644, b"gone\n")
        .file("data/replaced.txt", 0o644, b"v1\n")
        .dir("opaque", 0o755)
        .file("opaque/old1", 0o644, b"old\n")
        .file("opaque/old2", 0o644, b"old\n")
        .dir("links", 0o755)
        .file("links/original", 0o644, b"linked\n")
        .hardlink("links/hard", "links/original")
        .symlink("links/soft", "original")
}

/// The third layer: deletes `data/gone.txt`, empties `opaque/`, replaces a file.
pub fn whiteout_upper() -> Layer {
    Layer::new()
        .whiteout("data/gone.txt")
        .file("data/replaced.txt", 0o644, b"v2\n")
        .opaque("opaque")
        .file("opaque/new", 0o644, b"new\n")
}

const PAUSE_SCRIPT: &[u8] =
    b"#!/bin/sh\ntrap 'exit 0' TERM INT\nwhile :; do sleep 3600 & wait $!; done\n";

/// Builds and pushes every standard image into `registry`.
pub fn push_standard_images(registry: &Registry) -> Result<StandardImages> {
    let base = BuiltLayer::new(busybox_layer()?, Compression::Gzip);
    let env_base = |extra: &[&str]| {
        let mut env = vec![IMAGE_PATH.to_string()];
        env.extend(extra.iter().map(|s| s.to_string()));
        env
    };
    let with = |config: RunConfig| Image::new(vec![base.clone()], config);
    let sh = Some(vec!["sh".to_string()]);

    let busybox = with(RunConfig {
        env: env_base(&[]),
        cmd: sh.clone(),
        ..RunConfig::default()
    })
    .push(registry, "test/busybox", "latest")?;

    let whiteout = Image::new(
        vec![
            base.clone(),
            BuiltLayer::new(whiteout_lower(), Compression::Gzip),
            BuiltLayer::new(whiteout_upper(), Compression::None),
        ],
        RunConfig {
            env: env_base(&[]),
            cmd: sh.clone(),
            ..RunConfig::default()
        },
    )
    .push(registry, "test/whiteout", "latest")?;

    let user = with(RunConfig {
        env: env_base(&[]),
        cmd: sh.clone(),
        user: Some("tester".into()),
        ..RunConfig::default()
    })
    .push(registry, "test/user", "latest")?;

    let entrypoint = with(RunConfig {
        env: env_base(&[]),
        entrypoint: Some(vec!["/bin/echo".into(), "entry".into()]),
        cmd: Some(vec!["from-cmd".into()]),
        ..RunConfig::default()
    })
    .push(registry, "test/entrypoint", "latest")?;

    let mut env_image = with(RunConfig {
        env: env_base(&["GREETING=hello"]),
        cmd: sh.clone(),
        working_dir: Some("/work".into()),
        stop_signal: Some("SIGUSR1".into()),
        ..RunConfig::default()
    });
    env_image.flavour = Flavour::Docker;
    let env = env_image.push(registry, "test/env", "latest")?;

    let volume = with(RunConfig {
        env: env_base(&[]),
        cmd: sh,
        volumes: vec!["/data".into()],
        ..RunConfig::default()
    })
    .push(registry, "test/volume", "latest")?;

    let pause = Image::new(
        vec![
            base.clone(),
            BuiltLayer::new(
                Layer::new().file("pause", 0o755, PAUSE_SCRIPT),
                Compression::Gzip,
            ),
        ],
        RunConfig {
            env: env_base(&[]),
            entrypoint: Some(vec!["/pause".into()]),
            stop_signal: Some("SIGTERM".into()),
            ..RunConfig::default()
        },
    )
    .push(registry, "test/pause", "3.10")?;

    Ok(StandardImages {
        busybox,
        whiteout,
        user,
        entrypoint,
        env,
        volume,
        pause,
    })
}
