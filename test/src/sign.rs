//! Signing test images as cosign does, with a key the test generates: the
//! payload and an empty config as blobs, then an OCI manifest tagged
//! `sha256-<hex>.sig` beside the image whose one layer is the payload and
//! carries the signature as an annotation.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use crio_image::reference::Reference;
use crio_image::sigstore::{
    PAYLOAD_MEDIA_TYPE, SIGNATURE_ANNOTATION, SigstoreSignature, payload, signature_tag,
};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::json;

use crate::image::{Pushed, digest};
use crate::registry::Registry;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The config of a signature manifest: an empty JSON object.
const EMPTY_CONFIG: &[u8] = b"{}";

/// A P-256 key pair whose public half is in a PEM file, as `cosign.pub`.
pub struct Signer {
    key: SigningKey,
    public_key_path: PathBuf,
}

impl Signer {
    /// Generates a key pair and writes the public key PEM to `public_key_path`.
    pub fn generate(public_key_path: &Path) -> Result<Self> {
        let key = random_key()?;
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .context("encode public key")?;
        std::fs::write(public_key_path, pem)
            .with_context(|| format!("write {}", public_key_path.display()))?;
        Ok(Self {
            key,
            public_key_path: public_key_path.to_path_buf(),
        })
    }

    /// Where the public key PEM is.
    pub fn public_key_path(&self) -> &Path {
        &self.public_key_path
    }

    /// Signs `image` for its own name (`host/repo:tag`); returns the digest
    /// of the signature manifest.
    pub fn sign(&self, registry: &Registry, image: &Pushed) -> Result<String> {
        self.sign_as(registry, image, &image.reference)
    }

    /// Signs `image` claiming the identity `docker_reference`, replacing any
    /// signature manifest it had.
    pub fn sign_as(
        &self,
        registry: &Registry,
        image: &Pushed,
        docker_reference: &str,
    ) -> Result<String> {
        let body = payload(docker_reference, &image.manifest_digest);
        let signature: Signature = self.key.sign(&body);
        let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_der());
        put_signature(registry, image, &body, &signature)
    }
}

/// Stores `payload` with `signature_base64` as `image`'s signature manifest
/// exactly as given: tests build tampered signatures with it.
pub fn put_signature(
    registry: &Registry,
    image: &Pushed,
    payload: &[u8],
    signature_base64: &str,
) -> Result<String> {
    let repo = repository(image)?;
    let payload_digest = registry.put_blob(&repo, payload)?;
    let config_digest = registry.put_blob(&repo, EMPTY_CONFIG)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": EMPTY_CONFIG.len()},
        "layers": [{
            "mediaType": PAYLOAD_MEDIA_TYPE,
            "digest": payload_digest,
            "size": payload.len(),
            "annotations": {SIGNATURE_ANNOTATION: signature_base64},
        }],
    });
    let body = serde_json::to_vec(&manifest)?;
    registry.put_manifest(
        &repo,
        &signature_tag(&image.manifest_digest),
        OCI_MANIFEST,
        &body,
    )
}

/// The signatures stored beside `image`, read back from the registry as a
/// pull reads them.
pub fn fetch_signatures(registry: &Registry, image: &Pushed) -> Result<Vec<SigstoreSignature>> {
    let repo = repository(image)?;
    let tag = signature_tag(&image.manifest_digest);
    let manifest: serde_json::Value = serde_json::from_slice(
        &registry.get(&format!("/v2/{repo}/manifests/{tag}"), OCI_MANIFEST)?,
    )
    .with_context(|| format!("signature manifest {repo}:{tag}"))?;
    let mut signatures = Vec::new();
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        if layer["mediaType"] != PAYLOAD_MEDIA_TYPE {
            continue;
        }
        let (Some(blob), Some(signature)) = (
            layer["digest"].as_str(),
            layer["annotations"][SIGNATURE_ANNOTATION].as_str(),
        ) else {
            bail!("signature manifest {repo}:{tag}: layer without digest or signature");
        };
        let payload = registry.get(&format!("/v2/{repo}/blobs/{blob}"), "*/*")?;
        if digest(&payload) != blob {
            bail!("payload {blob}: the registry served other bytes");
        }
        signatures.push(SigstoreSignature {
            payload,
            signature_base64: signature.to_string(),
        });
    }
    Ok(signatures)
}

/// The repository of a pushed image.
fn repository(image: &Pushed) -> Result<String> {
    Ok(Reference::parse(&image.reference)?.repository)
}

/// A secret scalar from the kernel's random source (a draw outside the
/// curve's order, about one in 2^32, is drawn again).
fn random_key() -> Result<SigningKey> {
    let mut urandom = std::fs::File::open("/dev/urandom").context("open /dev/urandom")?;
    for _ in 0..8 {
        let mut secret = [0u8; 32];
        urandom.read_exact(&mut secret)?;
        if let Ok(key) = SigningKey::from_slice(&secret) {
            return Ok(key);
        }
    }
    bail!("no valid P-256 secret in 8 draws")
}
