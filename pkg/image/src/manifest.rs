//! Manifests as registries serve them: OCI image manifest and index, Docker
//! v2 schema 2 manifest and manifest list, and Docker v2 schema 1 (read
//! only), normalised to what a pull needs. Platform selection for indexes.

use crio_storage::Digest;
use serde::Deserialize;
use serde_json::Value;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker v2 manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2 schema 1, signed.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker v2 schema 1.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// The Accept header of a manifest request: every kind we read.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws, application/vnd.docker.distribution.manifest.v1+json";

/// Largest manifest or config document accepted.
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not shaped like any manifest kind.
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// A media type we do not read.
    #[error("unsupported manifest type {0:?}")]
    Unsupported(String),
    /// An index without an entry for this host.
    #[error("no image for platform {0} in the manifest list (has: {1})")]
    NoPlatform(String, String),
}

/// A platform as indexes describe it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct Platform {
    /// `architecture` (Go names: amd64, arm64…).
    #[serde(default)]
    pub architecture: String,
    /// `os`.
    #[serde(default)]
    pub os: String,
    /// `variant` (v7, v8…).
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// This host's platform.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Self {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(String::from),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the target (validated while parsing).
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// A manifest, normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    /// One image: config and layers (lowest first).
    Image {
        /// The config blob.
        config: Descriptor,
        /// Layer blobs, lowest first.
        layers: Vec<Descriptor>,
    },
    /// A list of images by platform.
    Index(Vec<Descriptor>),
    /// A schema 1 image: layer blobs (lowest first, empty ones dropped) and
    /// a config made from its history.
    Schema1 {
        /// Layer blob digests, lowest first.
        layers: Vec<Digest>,
        /// The top history entry's `v1Compatibility` document.
        top: Value,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    fs_layers: Option<Vec<FsLayer>>,
    history: Option<Vec<History>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: Digest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct History {
    v1_compatibility: String,
}

/// Parses a manifest; `content_type` is the registry's Content-Type header.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, ManifestError> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let media = raw.media_type.clone().or(header).unwrap_or_else(|| {
        if raw.schema_version == 1 {
            DOCKER_SCHEMA1.into()
        } else if raw.manifests.is_some() {
            OCI_INDEX.into()
        } else {
            OCI_MANIFEST.into()
        }
    });
    match media.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = raw
                .config
                .ok_or_else(|| ManifestError::Invalid("image manifest without config".into()))?;
            let layers = raw.layers.unwrap_or_default();
            Ok(Manifest::Image { config, layers })
        }
        OCI_INDEX | DOCKER_LIST => {
            let entries = raw
                .manifests
                .ok_or_else(|| ManifestError::Invalid("index without manifests".into()))?;
            Ok(Manifest::Index(entries))
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => schema1(raw),
        other => Err(ManifestError::Unsupported(other.to_string())),
    }
}

fn schema1(raw: Raw) -> Result<Manifest, ManifestError> {
    let fs_layers = raw
        .fs_layers
        .ok_or_else(|| ManifestError::Invalid("schema 1 manifest without fsLayers".into()))?;
    let history = raw.history.unwrap_or_default();
    if history.len() != fs_layers.len() || history.is_empty() {
        return Err(ManifestError::Invalid(
            "schema 1 manifest: fsLayers and history differ in length".into(),
        ));
    }
    let mut top = None;
    let mut layers = Vec::new();
    // Listed top first; a "throwaway" entry has no content.
    for (layer, hist) in fs_layers.iter().zip(&history).rev() {
        let v1: Value = serde_json::from_str(&hist.v1_compatibility)
            .map_err(|e| ManifestError::Invalid(format!("schema 1 v1Compatibility: {e}")))?;
        if !v1["throwaway"].as_bool().unwrap_or(false) {
            layers.push(layer.blob_sum.clone());
        }
        top = Some(v1);
    }
    Ok(Manifest::Schema1 {
        layers,
        top: top.unwrap_or(Value::Null),
    })
}

/// The index entry for `platform`: same OS and architecture, and the same
/// variant when both name one (an entry without a variant also matches).
pub fn select<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let matches = |d: &&Descriptor, strict: bool| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == platform.os
                && p.architecture == platform.architecture
                && match (&p.variant, &platform.variant) {
                    (Some(a), Some(b)) => a == b,
                    (None, _) => !strict || platform.variant.is_none(),
                    (Some(_), None) => !strict,
                }
        })
    };
    entries
        .iter()
        .find(|d| matches(d, true))
        .or_else(|| entries.iter().find(|d| matches(d, false)))
        .ok_or_else(|| {
            let have: Vec<String> = entries
                .iter()
                .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                .collect();
            ManifestError::NoPlatform(platform.to_string(), have.join(", "))
        })
}

/// An image config made from a schema 1 top history entry, with the
/// computed diff IDs.
pub fn schema1_config(top: &Value, diff_ids: &[Digest]) -> Value {
    serde_json::json!({
        "architecture": top["architecture"].as_str().unwrap_or(Platform::host().architecture.as_str()),
        "os": top["os"].as_str().unwrap_or("linux"),
        "created": top["created"],
        "config": top["config"],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn image_manifests() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{D1}","size":3}},"layers":[{{"mediaType":"y","digest":"{D2}","size":9}}]}}"#
        );
        let Manifest::Image { config, layers } = parse(None, body.as_bytes()).unwrap() else {
            panic!("not an image")
        };
        assert_eq!(config.digest, D1);
        assert_eq!(layers[0].size, 9);
        // No mediaType field: the header decides.
        let body =
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":3}},"layers":[]}}"#);
        assert!(matches!(
            parse(
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                body.as_bytes()
            ),
            Ok(Manifest::Image { .. })
        ));
    }

    #[test]
    fn bad_manifests() {
        assert!(matches!(
            parse(None, b"[1,2]"),
            Err(ManifestError::Invalid(_))
        ));
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/x-weird","config":{{"digest":"{D1}","size":1}}}}"#
        );
        assert!(matches!(
            parse(None, body.as_bytes()),
            Err(ManifestError::Unsupported(_))
        ));
        let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:../../x","size":1},"layers":[]}"#;
        assert!(
            parse(None, body.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("not a sha256")
        );
        // Layers, index entries and schema 1 blobs alike.
        for body in [
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{D1}","size":1}},"layers":[{{"digest":"{D2}/diff/fake","size":1}}]}}"#
            ),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"digest":"{}","size":1}}]}}"#,
                D1.to_uppercase()
            ),
            r#"{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:.."}],"history":[{"v1Compatibility":"{}"}]}"#.to_string(),
        ] {
            let err = parse(None, body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("not a sha256"), "{body}: {err}");
        }
    }

    #[test]
    fn index_platform_selection() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"digest":"{D1}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v6"}}}},
            {{"digest":"{D2}","size":2,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
            {{"digest":"{D1}","size":3,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"digest":"{D2}","size":4,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
        );
        let Manifest::Index(entries) = parse(None, body.as_bytes()).unwrap() else {
            panic!()
        };
        let pick = |arch: &str, variant: Option<&str>| {
            let p = Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(String::from),
            };
            select(&entries, &p).map(|d| d.size)
        };
        assert_eq!(pick("amd64", None).unwrap(), 3);
        assert_eq!(pick("arm", Some("v7")).unwrap(), 2);
        assert_eq!(pick("arm64", Some("v8")).unwrap(), 4);
        let err = pick("s390x", None).unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/amd64"),
            "{err}"
        );
        assert!(select(&entries, &Platform::host()).is_ok());
    }

    #[test]
    fn schema1_reads_layers_bottom_up() {
        let body = format!(
            r#"{{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[{{"blobSum":"{D2}"}},{{"blobSum":"{D1}"}},{{"blobSum":"{D1}"}}],
            "history":[{{"v1Compatibility":"{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Cmd\":[\"sh\"]}}}}"}},
                       {{"v1Compatibility":"{{\"throwaway\":true}}"}},
                       {{"v1Compatibility":"{{}}"}}]}}"#
        );
        let Manifest::Schema1 { layers, top } =
            parse(Some(DOCKER_SCHEMA1_SIGNED), body.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(layers, [D1, D2]);
        let config = schema1_config(&top, &[Digest::parse(D1).unwrap()]);
        assert_eq!(config["config"]["Cmd"][0], "sh");
        assert_eq!(config["rootfs"]["diff_ids"][0], D1);
    }
}
