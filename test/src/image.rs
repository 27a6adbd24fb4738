//! Building real OCI and Docker images in memory and pushing them to a
//! registry over the distribution API: layers as tar streams (gzip or plain),
//! whiteouts and opaque directories, hard and symbolic links.

use std::io::Write;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::registry::Registry;

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One tar layer under construction.
pub struct Layer {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

const MTIME: u64 = 1_700_000_000;

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .expect("tar in memory");
        self
    }

    /// A regular file owned by root.
    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
        self.file_owned(path, mode, 0, 0, data)
    }

    /// A regular file with an owner.
    pub fn file_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.tar
            .append_data(&mut h, path, data)
            .expect("tar in memory");
        self
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar in memory");
        self
    }

    /// A hard link at `path` to the earlier entry `target`.
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("tar in memory");
        self
    }

    /// An OCI whiteout deleting `path` of a lower layer.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&wh, 0o644, b"")
    }

    /// Marks `dir` opaque: lower layers' content of it is hidden.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    /// An entry written as given, name and link target included, for
    /// hostile layers (the tar builder refuses `..` and absolute names).
    pub fn raw(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        let old = h.as_old_mut();
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let l = link.len().min(old.linkname.len());
        old.linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
        h.set_cksum();
        self.tar.append(&h, data).expect("tar in memory");
        self
    }

    /// A header claiming `size` bytes followed by far fewer.
    pub fn lying_size(mut self, name: &str, size: u64) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 512]);
        self.tar.get_mut().extend_from_slice(&bytes);
        self
    }

    /// The uncompressed tar stream.
    pub fn into_tar(self) -> Vec<u8> {
        self.tar.into_inner().expect("tar in memory")
    }
}

/// How a layer blob is stored in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// Manifest flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// OCI image manifest.
    Oci,
    /// Docker v2 schema 2.
    Docker,
}

impl Flavour {
    fn manifest_type(self) -> &'static str {
        match self {
            Flavour::Oci => "application/vnd.oci.image.manifest.v1+json",
            Flavour::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    fn config_type(self) -> &'static str {
        match self {
            Flavour::Oci => "application/vnd.oci.image.config.v1+json",
            Flavour::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }

    fn layer_type(self, c: Compression) -> &'static str {
        match (self, c) {
            (Flavour::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (Flavour::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (_, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Flavour::Docker, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (Flavour::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
        }
    }
}

/// A layer ready to push: its tar, its blob, and both digests.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    /// Digest of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    /// The blob as stored.
    pub blob: Vec<u8>,
    /// Digest of the blob.
    pub digest: String,
    /// Its compression.
    pub compression: Compression,
}

impl BuiltLayer {
    /// Compresses `layer` as asked.
    pub fn new(layer: Layer, compression: Compression) -> Self {
        let tar = layer.into_tar();
        let blob = match compression {
            Compression::None => tar.clone(),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&tar).expect("gzip in memory");
                gz.finish().expect("gzip in memory")
            }
            Compression::Zstd => ruzstd::encoding::compress_to_vec(
                &tar[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        };
        Self {
            diff_id: digest(&tar),
            digest: digest(&blob),
            blob,
            compression,
        }
    }
}

/// The runtime part of an image config (`config` in the JSON).
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// `User`.
    pub user: Option<String>,
    /// `Env`.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `Volumes`.
    pub volumes: Vec<String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
    /// `Labels`.
    pub labels: Vec<(String, String)>,
}

/// The Go architecture name of this host, as image configs spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// An image to push.
#[derive(Debug, Clone)]
pub struct Image {
    /// Layers, lowest first.
    pub layers: Vec<BuiltLayer>,
    /// Runtime configuration.
    pub config: RunConfig,
    /// Manifest flavour.
    pub flavour: Flavour,
    /// Architecture in the config.
    pub arch: String,
}

/// Where an image landed in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `host:port/repo:tag`.
    pub reference: String,
    /// `host:port/repo@sha256:…`.
    pub by_digest: String,
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// Digest of the config: the image id.
    pub config_digest: String,
    /// Media type of the manifest.
    pub media_type: String,
    /// Size of the manifest.
    pub size: usize,
}

impl Image {
    /// An image of `layers` for this host's platform.
    pub fn new(layers: Vec<BuiltLayer>, config: RunConfig) -> Self {
        Self {
            layers,
            config,
            flavour: Flavour::Oci,
            arch: host_arch().to_string(),
        }
    }

    /// The config JSON.
    pub fn config_json(&self) -> Vec<u8> {
        let c = &self.config;
        let mut run = serde_json::Map::new();
        if let Some(u) = &c.user {
            run.insert("User".into(), json!(u));
        }
        if !c.env.is_empty() {
            run.insert("Env".into(), json!(c.env));
        }
        if let Some(e) = &c.entrypoint {
            run.insert("Entrypoint".into(), json!(e));
        }
        if let Some(cmd) = &c.cmd {
            run.insert("Cmd".into(), json!(cmd));
        }
        if let Some(w) = &c.working_dir {
            run.insert("WorkingDir".into(), json!(w));
        }
        if !c.volumes.is_empty() {
            let v: serde_json::Map<_, _> =
                c.volumes.iter().map(|p| (p.clone(), json!({}))).collect();
            run.insert("Volumes".into(), Value::Object(v));
        }
        if let Some(s) = &c.stop_signal {
            run.insert("StopSignal".into(), json!(s));
        }
        if !c.labels.is_empty() {
            let l: serde_json::Map<_, _> = c
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            run.insert("Labels".into(), Value::Object(l));
        }
        let config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": self.arch,
            "os": "linux",
            "config": run,
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": self.layers.iter().map(|_| json!({"created_by": "crio-test image builder"})).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&config).expect("json")
    }

    /// The manifest JSON for a given config blob.
    pub fn manifest_json(&self, config: &[u8]) -> Vec<u8> {
        let f = self.flavour;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": f.manifest_type(),
            "config": {"mediaType": f.config_type(), "digest": digest(config), "size": config.len()},
            "layers": self.layers.iter().map(|l| json!({
                "mediaType": f.layer_type(l.compression),
                "digest": l.digest,
                "size": l.blob.len(),
            })).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&manifest).expect("json")
    }

    /// Pushes blobs, config and manifest as `repo:tag`.
    pub fn push(&self, registry: &Registry, repo: &str, tag: &str) -> Result<Pushed> {
        for layer in &self.layers {
            registry.put_blob(repo, &layer.blob)?;
        }
        let config = self.config_json();
        registry.put_blob(repo, &config)?;
        let manifest = self.manifest_json(&config);
        let manifest_digest =
            registry.put_manifest(repo, tag, self.flavour.manifest_type(), &manifest)?;
        if manifest_digest != digest(&manifest) {
            bail!(
                "registry stored manifest {manifest_digest}, expected {}",
                digest(&manifest)
            );
        }
        Ok(Pushed {
            reference: format!("{}/{repo}:{tag}", registry.host()),
            by_digest: format!("{}/{repo}@{manifest_digest}", registry.host()),
            manifest_digest,
            config_digest: digest(&config),
            media_type: self.flavour.manifest_type().to_string(),
            size: manifest.len(),
        })
    }
}

/// Pushes an OCI index of already pushed manifests (same repository), each
/// entry with its `(architecture, variant)`.
pub fn push_index(
    registry: &Registry,
    repo: &str,
    tag: &str,
    entries: &[(&Pushed, &str, Option<&str>)],
) -> Result<Pushed> {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(p, arch, variant)| {
            let mut platform = json!({"architecture": arch, "os": "linux"});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            json!({"mediaType": p.media_type, "digest": p.manifest_digest, "size": p.size, "platform": platform})
        })
        .collect();
    let media = "application/vnd.oci.image.index.v1+json";
    let body = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": media, "manifests": manifests}),
    )?;
    let d = registry.put_manifest(repo, tag, media, &body)?;
    Ok(Pushed {
        reference: format!("{}/{repo}:{tag}", registry.host()),
        by_digest: format!("{}/{repo}@{d}", registry.host()),
        manifest_digest: d,
        config_digest: String::new(),
        media_type: media.to_string(),
        size: body.len(),
    })
}
