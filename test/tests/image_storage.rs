//! What pulls leave on disk: the overlay view of a whiteout image, hostile
//! layers refused without a trace, wrong digests, a daemon killed mid-pull,
//! concurrent pulls, registries that require credentials.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crio_api::client::CriClient;
use crio_api::cri::{AuthConfig, ImageSpec, ImageStatusRequest, ListImagesRequest};
use crio_storage::mount::{Overlay, unmount};
use crio_test::Registry;
use crio_test::cri::{pull, pull_request};
use crio_test::image::{BuiltLayer, Compression, Image, Layer, RunConfig};
use crio_test::images::{IMAGE_PATH, busybox_layer};
use crio_test::world::{ImageWorld, daemon_for};
use nix::sys::signal::Signal;
use tar::EntryType as T;
use tonic::Code;

async fn image_count(client: &mut CriClient) -> usize {
    client
        .image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .len()
}

/// Unmounts on drop, also when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        unmount(&self.0).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whiteout_image_gives_the_right_tree_in_an_overlay_mount() {
    let world = ImageWorld::start("", "").unwrap();
    let mut client = world.daemon.client().await.unwrap();
    pull(&mut client, &world.images.whiteout.reference)
        .await
        .unwrap();
    let resp = client
        .image
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: world.images.whiteout.reference.clone(),
                ..ImageSpec::default()
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    let layers: Vec<PathBuf> = info["layers"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|c| {
            world
                .daemon
                .path("root/layers")
                .join(c.as_str().unwrap().trim_start_matches("sha256:"))
                .join("diff")
        })
        .collect();
    assert_eq!(layers.len(), 3);
    let target = world.daemon.path("merged");
    std::fs::create_dir(&target).unwrap();
    Overlay {
        lowers: layers,
        upper: None,
    }
    .mount(&target)
    .unwrap();
    let _guard = Mounted(target.clone());

    let read = |p: &str| std::fs::read_to_string(target.join(p)).unwrap();
    assert_eq!(read("data/keep.txt"), "keep\n");
    assert_eq!(read("data/replaced.txt"), "v2\n");
    assert!(
        !target.join("data/gone.txt").exists(),
        "whiteout did not hide the file"
    );
    let mut opaque: Vec<_> = std::fs::read_dir(target.join("opaque"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    opaque.sort();
    assert_eq!(opaque, ["new"], "opaque dir must hide the lower entries");
    let a = std::fs::metadata(target.join("links/original")).unwrap();
    let b = std::fs::metadata(target.join("links/hard")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link not linked");
    assert_eq!(
        std::fs::read_link(target.join("links/soft")).unwrap(),
        Path::new("original")
    );
    assert_eq!(read("links/soft"), "linked\n");
    let busybox = std::fs::metadata(target.join("bin/busybox")).unwrap();
    assert_eq!(busybox.mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(target.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
}

/// Pushes busybox plus `layer` as `test/evil:<tag>`.
fn push_evil(registry: &Registry, tag: &str, layer: Layer) -> String {
    let image = Image::new(
        vec![
            BuiltLayer::new(busybox_layer().unwrap(), Compression::Gzip),
            BuiltLayer::new(layer, Compression::Gzip),
        ],
        RunConfig {
            env: vec![IMAGE_PATH.into()],
            ..RunConfig::default()
        },
    );
    image.push(registry, "test/evil", tag).unwrap().reference
}

/// A directory entry's metadata is applied at the end of its layer; a later
/// entry replacing the directory by a link to a host file must not carry
/// the mode (set-uid 4777), owner or times over to that file.
#[tokio::test(flavor = "multi_thread")]
async fn directory_metadata_never_reaches_a_host_file_through_a_later_link() {
    use std::os::unix::fs::PermissionsExt;
    let registry = Registry::start().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "original").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = std::fs::metadata(&victim).unwrap();
    let layer = Layer::new()
        .dir("x", 0o4777)
        .symlink("x", &victim.display().to_string());
    let reference = push_evil(&registry, "chmod-through-link", layer);
    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    pull(&mut client, &reference).await.unwrap();
    let after = std::fs::metadata(&victim).unwrap();
    assert_eq!(after.mode(), before.mode(), "mode of the host file changed");
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(after.mtime(), before.mtime());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
}

#[tokio::test(flavor = "multi_thread")]
async fn malicious_layers_fail_and_write_nothing_outside() {
    let registry = Registry::start().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "original").unwrap();
    let escape = outside.path().join("escaped");
    let depth = "../".repeat(40);
    let cases = [
        (
            "dotdot",
            Layer::new().raw(
                T::Regular,
                &format!("{depth}{}", escape.display()),
                "",
                b"x",
            ),
            "\"..\"",
        ),
        (
            "absolute",
            Layer::new().raw(T::Regular, &escape.display().to_string(), "", b"x"),
            "absolute",
        ),
        (
            "symlink-then-write",
            Layer::new()
                .raw(
                    T::Symlink,
                    "evil",
                    &outside.path().display().to_string(),
                    b"",
                )
                .raw(T::Regular, "evil/escaped", "", b"x"),
            "symbolic link",
        ),
        (
            "hardlink-outside",
            Layer::new().raw(T::Link, "stolen", &victim.display().to_string(), b""),
            "absolute",
        ),
        (
            "huge",
            Layer::new().lying_size("huge", 1 << 50),
            "too large",
        ),
    ];
    let pushed: Vec<_> = cases
        .into_iter()
        .map(|(tag, layer, why)| (tag, why, push_evil(&registry, tag, layer)))
        .collect();
    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    for (tag, why, reference) in &pushed {
        let err = pull(&mut client, reference).await.unwrap_err();
        assert!(err.message().contains(why), "{tag}: {}", err.message());
        assert!(!escape.exists(), "{tag}: wrote outside the store");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "original",
            "{tag}"
        );
        assert_eq!(
            std::fs::metadata(&victim).unwrap().nlink(),
            1,
            "{tag}: linked the victim"
        );
    }
    assert_eq!(image_count(&mut client).await, 0);
    let tmp = daemon.path("root/layers/tmp");
    assert_eq!(
        std::fs::read_dir(tmp).unwrap().count(),
        0,
        "half-unpacked layers left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_digests_fail_with_a_clear_error() {
    let registry = Registry::start().unwrap();
    let layer = BuiltLayer::new(busybox_layer().unwrap(), Compression::Gzip);
    let mut wrong_diff = layer.clone();
    wrong_diff.diff_id = crio_test::image::digest(b"something else");
    let image = Image::new(vec![wrong_diff], RunConfig::default());
    let pushed = image.push(&registry, "test/wrongdiff", "latest").unwrap();
    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    let err = pull(&mut client, &pushed.reference).await.unwrap_err();
    assert!(
        err.message().contains("does not match diff ID"),
        "{}",
        err.message()
    );
    assert_eq!(image_count(&mut client).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_do_the_work_once() {
    let world = ImageWorld::start("", "").unwrap();
    let client = world.daemon.client().await.unwrap();
    let name = world.images.whiteout.reference.clone();
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let mut c = client.clone();
            let n = name.clone();
            tokio::spawn(async move { pull(&mut c, &n).await })
        })
        .collect();
    for p in pulls {
        assert_eq!(
            p.await.unwrap().unwrap(),
            world.images.whiteout.config_digest
        );
    }
    let pulled = world.daemon.log().matches("pulled").count();
    assert_eq!(pulled, 1, "{}", world.daemon.log());
}

/// An image with ~64 MiB of incompressible data: its pull lasts long enough
/// to be interrupted.
fn push_big(registry: &Registry) -> crio_test::image::Pushed {
    let mut data = vec![0u8; 64 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let big = BuiltLayer::new(
        Layer::new().file("big.bin", 0o644, &data),
        Compression::None,
    );
    let image = Image::new(
        vec![
            BuiltLayer::new(busybox_layer().unwrap(), Compression::Gzip),
            big,
        ],
        RunConfig::default(),
    );
    image.push(registry, "test/big", "latest").unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_pull_stops_and_leaves_nothing() {
    let registry = Registry::start().unwrap();
    let pushed = push_big(&registry);
    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut hasty = crio_api::client::connect_with(
        &daemon.endpoint(),
        std::time::Duration::from_secs(10),
        Some(std::time::Duration::from_millis(150)),
    )
    .await
    .unwrap();
    let err = pull(&mut hasty, &pushed.reference).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    // The daemon notices and stops; nothing half-made stays.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !daemon.log().contains("cancelled") {
        assert!(
            std::time::Instant::now() < deadline,
            "pull not cancelled: {}",
            daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut client = daemon.client().await.unwrap();
    assert_eq!(image_count(&mut client).await, 0);
    let tmp = daemon.path("root/layers/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "half-unpacked layer left"
    );
    // Nothing of the cancelled pull stands in the way of the next one.
    assert_eq!(
        pull(&mut client, &pushed.reference).await.unwrap(),
        pushed.config_digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_killed_midway_leaves_no_image_and_can_be_redone() {
    let registry = Registry::start().unwrap();
    let pushed = push_big(&registry);
    let mut daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    let name = pushed.reference.clone();
    let mut c = client.clone();
    let pulling = tokio::spawn(async move { pull(&mut c, &name).await });
    // Kill the daemon once unpacking has begun.
    let tmp = daemon.path("root/layers/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "pull never started unpacking"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    assert!(pulling.await.unwrap().is_err());

    daemon.spawn().unwrap();
    client = daemon.client().await.unwrap();
    assert_eq!(image_count(&mut client).await, 0);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "debris left after restart"
    );
    let id = pull(&mut client, &pushed.reference).await.unwrap();
    assert_eq!(id, pushed.config_digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry_needs_credentials() {
    let registry = Registry::start_with_auth("alice", "s3cret").unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    let auth_json = format!(
        "{{\"auths\": {{\"{}\": {{\"auth\": \"YWxpY2U6czNjcmV0\"}}}}}}",
        registry.host()
    );
    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    let err = pull(&mut client, &images.busybox.reference)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mut wrong = pull_request(&images.busybox.reference);
    wrong.auth = Some(AuthConfig {
        username: "alice".into(),
        password: "wrong".into(),
        ..AuthConfig::default()
    });
    let err = client.image.pull_image(wrong).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mut right = pull_request(&images.busybox.reference);
    right.auth = Some(AuthConfig {
        username: "alice".into(),
        password: "s3cret".into(),
        ..AuthConfig::default()
    });
    client.image.pull_image(right).await.unwrap();

    // The auth string form, and the global auth file.
    let mut encoded = pull_request(&images.env.reference);
    encoded.auth = Some(AuthConfig {
        auth: "YWxpY2U6czNjcmV0".into(),
        ..AuthConfig::default()
    });
    client.image.pull_image(encoded).await.unwrap();
    drop(client);
    drop(daemon);
    let daemon = daemon_for(
        &registry,
        "",
        "global_auth_file = \"{dir}/auth.json\"\n",
        &[("auth.json", &auth_json)],
    )
    .unwrap();
    let mut client = daemon.client().await.unwrap();
    pull(&mut client, &images.user.reference).await.unwrap();
}

/// A config whose diff ID is a path: `sha256:<a stored layer>/diff/fake`
/// would make the store read a `layer.json` an earlier image shipped inside
/// its own layer (whose link leads to the host's `/`); `../` walks out of the
/// store. The pull fails naming the field, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread")]
async fn diff_ids_that_are_paths_fail_the_pull_and_store_nothing() {
    let registry = Registry::start().unwrap();
    let planted = serde_json::json!({
        "chain_id": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "diff_id": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "parent": null,
        "size": 0,
        "link": "../../../../../../../../../../",
    });
    let carrier = BuiltLayer::new(
        Layer::new().dir("fake", 0o755).file(
            "fake/layer.json",
            0o644,
            planted.to_string().as_bytes(),
        ),
        Compression::Gzip,
    );
    let carrier_hex = carrier.diff_id.trim_start_matches("sha256:").to_string();
    let first = Image::new(vec![carrier], RunConfig::default())
        .push(&registry, "test/carrier", "latest")
        .unwrap();
    let hostile = [
        ("inside", format!("sha256:{carrier_hex}/diff/fake")),
        ("dotdot", "sha256:../../../../../../tmp".to_string()),
        ("short", "sha256:abc".to_string()),
    ];
    let pushed: Vec<_> = hostile
        .iter()
        .map(|(tag, diff_id)| {
            let mut layer = BuiltLayer::new(Layer::new().file("x", 0o644, b"x"), Compression::Gzip);
            layer.diff_id = diff_id.clone();
            let image = Image::new(vec![layer], RunConfig::default());
            (
                tag,
                diff_id,
                image.push(&registry, "test/diffid", tag).unwrap(),
            )
        })
        .collect();
    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    assert_eq!(
        pull(&mut client, &first.reference).await.unwrap(),
        first.config_digest
    );
    let layers = |d: &crio_test::TestDaemon| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d.path("root/layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let before = layers(&daemon);
    for (tag, diff_id, p) in &pushed {
        let err = pull(&mut client, &p.reference).await.unwrap_err();
        assert!(
            err.message().contains("rootfs.diff_ids[0]")
                && err.message().contains(diff_id.as_str()),
            "{tag}: {err:?}"
        );
        assert_eq!(
            image_count(&mut client).await,
            1,
            "{tag}: an image was stored"
        );
        assert_eq!(layers(&daemon), before, "{tag}: a layer was stored");
    }
}
