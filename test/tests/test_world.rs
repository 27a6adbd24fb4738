//! The test world itself: the registry serves the images the tests build,
//! byte for byte, with the layers and configs they are meant to have.

use std::io::Read;

use crio_test::image::digest;
use crio_test::images::push_standard_images;
use crio_test::{Registry, TestDaemon};

fn manifest(registry: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    let accept = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json";
    serde_json::from_slice(
        &registry
            .get(&format!("/v2/{repo}/manifests/{tag}"), accept)
            .unwrap(),
    )
    .unwrap()
}

fn config(registry: &Registry, repo: &str, m: &serde_json::Value) -> serde_json::Value {
    let d = m["config"]["digest"].as_str().unwrap();
    let blob = registry
        .get(&format!("/v2/{repo}/blobs/{d}"), "*/*")
        .unwrap();
    assert_eq!(digest(&blob), d);
    serde_json::from_slice(&blob).unwrap()
}

/// Entry names of a layer blob, gzip or plain.
fn entries(blob: &[u8]) -> Vec<(String, tar::EntryType, String)> {
    let mut data = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut data)
            .unwrap();
    } else {
        data = blob.to_vec();
    }
    let mut archive = tar::Archive::new(&data[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
                link,
            )
        })
        .collect()
}

#[test]
fn registry_serves_the_standard_images() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();

    let m = manifest(&registry, "test/whiteout", "latest");
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let c = config(&registry, "test/whiteout", &m);
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(images.whiteout.config_digest, m["config"]["digest"]);

    let blobs: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().unwrap();
            let blob = registry
                .get(&format!("/v2/test/whiteout/blobs/{d}"), "*/*")
                .unwrap();
            assert_eq!(digest(&blob), d, "blob digest");
            assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap());
            blob
        })
        .collect();
    let base = entries(&blobs[0]);
    assert!(
        base.iter()
            .any(|(p, t, _)| p == "bin/busybox" && t.is_file())
    );
    assert!(
        base.iter()
            .any(|(p, t, l)| p == "bin/sh" && t.is_symlink() && l == "/bin/busybox")
    );
    let lower = entries(&blobs[1]);
    assert!(
        lower.iter().any(|(p, t, l)| p == "links/hard"
            && *t == tar::EntryType::Link
            && l == "links/original")
    );
    let upper = entries(&blobs[2]);
    let names: Vec<_> = upper.iter().map(|(p, _, _)| p.as_str()).collect();
    assert!(
        names.contains(&"data/.wh.gone.txt") && names.contains(&"opaque/.wh..wh..opq"),
        "{names:?}"
    );
    assert_eq!(
        layers[2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );

    let c = config(
        &registry,
        "test/user",
        &manifest(&registry, "test/user", "latest"),
    );
    assert_eq!(c["config"]["User"], "tester");
    let c = config(
        &registry,
        "test/entrypoint",
        &manifest(&registry, "test/entrypoint", "latest"),
    );
    assert_eq!(c["config"]["Entrypoint"][0], "/bin/echo");
    assert_eq!(c["config"]["Cmd"][0], "from-cmd");
    let m = manifest(&registry, "test/env", "latest");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let c = config(&registry, "test/env", &m);
    assert_eq!(c["config"]["WorkingDir"], "/work");
    assert!(
        c["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello")
    );
    let c = config(
        &registry,
        "test/volume",
        &manifest(&registry, "test/volume", "latest"),
    );
    assert!(c["config"]["Volumes"]["/data"].is_object());
    let c = config(
        &registry,
        "test/pause",
        &manifest(&registry, "test/pause", "3.10"),
    );
    assert_eq!(c["config"]["Entrypoint"][0], "/pause");
    assert!(images.pause.reference.ends_with("/test/pause:3.10"));
    assert!(images.busybox.by_digest.contains("@sha256:"));
}

#[test]
fn registry_with_basic_auth_rejects_anonymous_clients() {
    let registry = Registry::start_with_auth("alice", "s3cret").unwrap();
    let pushed = push_standard_images(&registry).unwrap();
    assert!(pushed.busybox.reference.starts_with(&registry.host()));
    let anonymous = ureq::get(&registry.url("/v2/test/busybox/manifests/latest")).call();
    assert!(
        matches!(anonymous, Err(ureq::Error::Status(401, _))),
        "{anonymous:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_and_registry_side_by_side() {
    // The harness pieces compose: a daemon whose configuration trusts the
    // test registry as insecure, and the registry holding the images.
    let registry = Registry::start().unwrap();
    push_standard_images(&registry).unwrap();
    let daemon = TestDaemon::start_with(
        &format!(
            "[crio.image]\ninsecure_registries = [\"{}\"]\n",
            registry.host()
        ),
        &[],
    )
    .unwrap();
    let out = daemon.crioctl(&["info"]).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info["config"]["image"]["insecure_registries"][0],
        registry.host()
    );
}
