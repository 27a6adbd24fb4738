//! The signing part of the test world: an image signed in cosign's layout
//! reads back from the registry and verifies under a sigstoreSigned policy;
//! a tampered signature, another key or an unsigned image does not.

use crio_image::policy::Policy;
use crio_image::reference::Reference;
use crio_image::sigstore::{SigstoreSignature, payload};
use crio_test::Registry;
use crio_test::images::push_standard_images;
use crio_test::sign::{Signer, fetch_signatures, put_signature};

/// A policy that wants a signature by the key at `key_path` everywhere.
fn policy_for(key_path: &std::path::Path) -> Policy {
    let text = serde_json::json!({
        "default": [{"type": "sigstoreSigned", "keyPath": key_path}],
    })
    .to_string();
    Policy::parse(&text, "policy.json").unwrap()
}

#[test]
fn signed_image_verifies_and_tampering_does_not() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::generate(&dir.path().join("cosign.pub")).unwrap();
    let pem = std::fs::read_to_string(signer.public_key_path()).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let policy = policy_for(signer.public_key_path());

    let image = &images.busybox;
    signer.sign(&registry, image).unwrap();
    let signatures = fetch_signatures(&registry, image).unwrap();
    assert_eq!(signatures.len(), 1);
    assert_eq!(
        signatures[0].payload,
        payload(&image.reference, &image.manifest_digest)
    );
    let by_tag = Reference::parse(&image.reference).unwrap();
    let by_digest = Reference::parse(&image.by_digest).unwrap();
    assert!(policy.needs_signatures(&by_tag));
    policy
        .evaluate(&by_tag, &image.manifest_digest, &signatures)
        .unwrap();
    policy
        .evaluate(&by_digest, &image.manifest_digest, &signatures)
        .unwrap();

    // The signature does not carry over to another manifest.
    let other = Reference::parse(&images.user.reference).unwrap();
    let e = policy
        .evaluate(&other, &images.user.manifest_digest, &signatures)
        .unwrap_err()
        .to_string();
    assert!(e.contains("signs manifest"), "{e}");

    // A payload changed after signing no longer verifies.
    let tampered = SigstoreSignature {
        payload: payload(&images.user.reference, &images.user.manifest_digest),
        signature_base64: signatures[0].signature_base64.clone(),
    };
    put_signature(
        &registry,
        &images.user,
        &tampered.payload,
        &tampered.signature_base64,
    )
    .unwrap();
    let fetched = fetch_signatures(&registry, &images.user).unwrap();
    assert_eq!(fetched, [tampered]);
    let e = policy
        .evaluate(&other, &images.user.manifest_digest, &fetched)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("signature 1: signature does not verify with any trusted key"),
        "{e}"
    );

    // Signed with another key.
    let stranger = Signer::generate(&dir.path().join("other.pub")).unwrap();
    stranger.sign(&registry, &images.env).unwrap();
    let env = Reference::parse(&images.env.reference).unwrap();
    let fetched = fetch_signatures(&registry, &images.env).unwrap();
    assert!(
        policy
            .evaluate(&env, &images.env.manifest_digest, &fetched)
            .is_err()
    );

    // Signed for another name: the default identity wants this one.
    signer
        .sign_as(&registry, &images.volume, &images.busybox.reference)
        .unwrap();
    let volume = Reference::parse(&images.volume.reference).unwrap();
    let fetched = fetch_signatures(&registry, &images.volume).unwrap();
    let e = policy
        .evaluate(&volume, &images.volume.manifest_digest, &fetched)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the policy wants"), "{e}");

    // Unsigned: nothing at the signature tag.
    assert!(fetch_signatures(&registry, &images.pause).is_err());
    let pause = Reference::parse(&images.pause.reference).unwrap();
    let e = policy
        .evaluate(&pause, &images.pause.manifest_digest, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no signature found"), "{e}");
}
