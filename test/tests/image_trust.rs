//! The trust policy at pull time: sigstore-signed images accepted with the
//! right key, unsigned or wrongly signed ones refused, `reject` rejecting,
//! and `signedBy` answered as unsupported.

use crio_api::cri::ListImagesRequest;
use crio_test::cri::pull;
use crio_test::images::push_standard_images;
use crio_test::sign::Signer;
use crio_test::world::daemon_for;
use crio_test::{Registry, TestDaemon};
use tonic::Code;

fn daemon_with_policy(registry: &Registry, policy: &str) -> TestDaemon {
    daemon_for(
        registry,
        "",
        "signature_policy = \"{dir}/policy.json\"\n",
        &[("policy.json", policy)],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigstore_signed_images_only() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let signer = Signer::generate(&keys.path().join("good.pub")).unwrap();
    let stranger = Signer::generate(&keys.path().join("other.pub")).unwrap();
    signer.sign(&registry, &images.busybox).unwrap();
    stranger.sign(&registry, &images.env).unwrap();

    let policy = format!(
        r#"{{"default": [{{"type": "reject"}}],
            "transports": {{"docker": {{"{host}/test": [{{"type": "sigstoreSigned", "keyPath": "{key}"}}]}}}}}}"#,
        host = registry.host(),
        key = signer.public_key_path().display()
    );
    let daemon = daemon_with_policy(&registry, &policy);
    let mut client = daemon.client().await.unwrap();

    let id = pull(&mut client, &images.busybox.reference).await.unwrap();
    assert_eq!(id, images.busybox.config_digest);

    let err = pull(&mut client, &images.user.reference).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("test/user") && err.message().contains("sigstoreSigned"),
        "{}",
        err.message()
    );

    let err = pull(&mut client, &images.env.reference).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("test/env"), "{}", err.message());

    let images_listed = client
        .image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(images_listed.len(), 1, "refused images must not be stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_and_signed_by() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let daemon = daemon_with_policy(&registry, r#"{"default": [{"type": "reject"}]}"#);
    let mut client = daemon.client().await.unwrap();
    let err = pull(&mut client, &images.busybox.reference)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("reject"), "{}", err.message());
    drop(client);
    drop(daemon);

    let daemon = daemon_with_policy(
        &registry,
        r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent.gpg"}]}"#,
    );
    let mut client = daemon.client().await.unwrap();
    let err = pull(&mut client, &images.busybox.reference)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not supported"), "{}", err.message());
}
