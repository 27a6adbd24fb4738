//! Sigstore signatures in cosign's registry layout: for a manifest
//! `sha256:<hex>`, a manifest tagged `sha256-<hex>.sig` in the same
//! repository whose layers (media type [`PAYLOAD_MEDIA_TYPE`]) are "simple
//! signing" payloads, each signed with ECDSA P-256 / SHA-256, the base64
//! signature in the layer annotation [`SIGNATURE_ANNOTATION`].

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use crate::reference::digest_problem;

/// Media type of a signature layer (its blob is the payload).
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` every payload carries.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Largest payload verified.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// One signature fetched from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreSignature {
    /// The payload blob, exactly as stored (the signed bytes).
    pub payload: Vec<u8>,
    /// The annotation: base64 of the DER (or raw 64-byte) ECDSA signature.
    pub signature_base64: String,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigstoreError {
    /// A public key that is not an ECDSA P-256 key in PEM.
    #[error("public key: {0}")]
    Key(String),
    /// The annotation is not a signature.
    #[error("signature is not base64 of an ECDSA signature")]
    Malformed,
    /// No trusted key made the signature.
    #[error("signature does not verify with any trusted key")]
    Unverified,
    /// A verified payload of the wrong shape.
    #[error("payload: {0}")]
    Payload(String),
}

/// The tag under which cosign stores the signatures of `manifest_digest`
/// (`sha256:<hex>` gives `sha256-<hex>.sig`).
pub fn signature_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replacen(':', "-", 1))
}

/// A trusted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// A key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) document, as
    /// cosign writes `cosign.pub`; only ECDSA P-256 is supported.
    pub fn from_pem(pem: &str) -> Result<PublicKey, SigstoreError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|e| SigstoreError::Key(format!("not an ECDSA P-256 public key in PEM: {e}")))
    }
}

/// What a verified payload claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `critical.identity.docker-reference`: the image name the signer meant.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the manifest signed.
    pub manifest_digest: String,
}

#[derive(Serialize, Deserialize)]
struct PayloadJson {
    critical: Critical,
    #[serde(default)]
    optional: Option<serde_json::Value>,
}

/// The critical section must be understood whole: unknown keys fail.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The payload a signer signs for `docker_reference` at `manifest_digest`.
pub fn payload(docker_reference: &str, manifest_digest: &str) -> Vec<u8> {
    let json = PayloadJson {
        critical: Critical {
            identity: Identity {
                docker_reference: docker_reference.to_string(),
            },
            image: Image {
                docker_manifest_digest: manifest_digest.to_string(),
            },
            kind: PAYLOAD_TYPE.to_string(),
        },
        optional: None,
    };
    // Serialising plain strings cannot fail.
    serde_json::to_vec(&json).unwrap_or_default()
}

/// Checks that one of `keys` signed the payload, then reads its claim.
/// The payload is parsed only after its signature verified.
pub fn verify(keys: &[PublicKey], signature: &SigstoreSignature) -> Result<Claim, SigstoreError> {
    if signature.payload.len() > MAX_PAYLOAD {
        return Err(SigstoreError::Payload(format!(
            "larger than {MAX_PAYLOAD} bytes"
        )));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature.signature_base64.trim())
        .map_err(|_| SigstoreError::Malformed)?;
    let sig = Signature::from_der(&raw)
        .or_else(|_| Signature::from_slice(&raw))
        .map_err(|_| SigstoreError::Malformed)?;
    if !keys
        .iter()
        .any(|PublicKey(key)| key.verify(&signature.payload, &sig).is_ok())
    {
        return Err(SigstoreError::Unverified);
    }
    let json: PayloadJson = serde_json::from_slice(&signature.payload)
        .map_err(|e| SigstoreError::Payload(e.to_string()))?;
    let critical = json.critical;
    if critical.kind != PAYLOAD_TYPE {
        return Err(SigstoreError::Payload(format!(
            "type {:?} is not {PAYLOAD_TYPE:?}",
            critical.kind
        )));
    }
    let manifest_digest = critical.image.docker_manifest_digest;
    if let Some(reason) = digest_problem(&manifest_digest) {
        return Err(SigstoreError::Payload(format!(
            "docker-manifest-digest {manifest_digest:?}: {reason}"
        )));
    }
    Ok(Claim {
        docker_reference: critical.identity.docker_reference,
        manifest_digest,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    pub(crate) const DIGEST: &str =
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A fixed key, so tests are repeatable.
    pub(crate) fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    pub(crate) fn public_pem(key: &SigningKey) -> String {
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    pub(crate) fn sign(key: &SigningKey, payload: Vec<u8>) -> SigstoreSignature {
        let sig: Signature = key.sign(&payload);
        SigstoreSignature {
            payload,
            signature_base64: base64::engine::general_purpose::STANDARD.encode(sig.to_der()),
        }
    }

    fn public(seed: u8) -> PublicKey {
        PublicKey::from_pem(&public_pem(&signing_key(seed))).unwrap()
    }

    #[test]
    fn tag_of_digest() {
        assert_eq!(
            signature_tag(DIGEST),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
    }

    #[test]
    fn payload_layout() {
        let p: serde_json::Value = serde_json::from_slice(&payload("quay.io/a:1", DIGEST)).unwrap();
        assert_eq!(
            p,
            serde_json::json!({
                "critical": {
                    "identity": {"docker-reference": "quay.io/a:1"},
                    "image": {"docker-manifest-digest": DIGEST},
                    "type": "cosign container image signature"
                },
                "optional": null
            })
        );
    }

    #[test]
    fn verifies_der_and_raw_signatures() {
        let key = signing_key(7);
        let signed = sign(&key, payload("quay.io/a:1", DIGEST));
        let claim = verify(&[public(9), public(7)], &signed).unwrap();
        assert_eq!(claim.docker_reference, "quay.io/a:1");
        assert_eq!(claim.manifest_digest, DIGEST);

        let sig: Signature = key.sign(&signed.payload);
        let raw = SigstoreSignature {
            payload: signed.payload.clone(),
            signature_base64: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        };
        assert!(verify(&[public(7)], &raw).is_ok());
    }

    #[test]
    fn rejects_wrong_key_and_tampering() {
        let signed = sign(&signing_key(7), payload("quay.io/a:1", DIGEST));
        assert_eq!(
            verify(&[public(8)], &signed),
            Err(SigstoreError::Unverified)
        );
        assert_eq!(verify(&[], &signed), Err(SigstoreError::Unverified));
        let mut tampered = signed.clone();
        tampered.payload = payload("quay.io/evil:1", DIGEST);
        assert_eq!(
            verify(&[public(7)], &tampered),
            Err(SigstoreError::Unverified)
        );
        let mut flipped = signed.clone();
        flipped.payload.push(b' ');
        assert_eq!(
            verify(&[public(7)], &flipped),
            Err(SigstoreError::Unverified)
        );
    }

    #[test]
    fn rejects_malformed_signatures() {
        let key = signing_key(7);
        for sig in [
            "",
            "!!!",
            "AAAA",
            &base64::engine::general_purpose::STANDARD.encode([0u8; 64]),
        ] {
            let s = SigstoreSignature {
                payload: payload("quay.io/a:1", DIGEST),
                signature_base64: sig.to_string(),
            };
            assert!(
                matches!(
                    verify(&[public(7)], &s),
                    Err(SigstoreError::Malformed | SigstoreError::Unverified)
                ),
                "{sig:?}"
            );
        }
        let huge = sign(&key, vec![b' '; MAX_PAYLOAD + 1]);
        assert!(matches!(
            verify(&[public(7)], &huge),
            Err(SigstoreError::Payload(_))
        ));
    }

    #[test]
    fn signed_but_bad_payloads_are_refused() {
        let key = signing_key(7);
        for (body, needle) in [
            ("not json".to_string(), "payload: "),
            (
                format!(r#"{{"critical":{{"identity":{{"docker-reference":"a"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"other"}}}}"#),
                "is not \"cosign container image signature\"",
            ),
            (
                r#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:12"},"type":"cosign container image signature"}}"#.to_string(),
                "sha256 needs 64 hex digits",
            ),
            (
                format!(r#"{{"critical":{{"identity":{{"docker-reference":"a"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"cosign container image signature","extra":1}}}}"#),
                "unknown field `extra`",
            ),
        ] {
            let e = verify(&[public(7)], &sign(&key, body.into_bytes())).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn bad_keys() {
        for pem in [
            "",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "garbage",
        ] {
            assert!(
                matches!(PublicKey::from_pem(pem), Err(SigstoreError::Key(_))),
                "{pem:?}"
            );
        }
    }
}
