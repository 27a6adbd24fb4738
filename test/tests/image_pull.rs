//! PullImage against the real registry: references by tag, digest, short
//! name and alias; manifest lists; mirrors; blocked and insecure registries;
//! compression; removal; ImageFsInfo; which registry gets which credentials.

use crio_api::client::CriClient;
use std::time::Duration;

use base64::Engine;
use crio_api::cri::{
    AuthConfig, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ListImagesRequest,
    PullImageRequest, RemoveImageRequest,
};
use crio_image::peer::{Peer, Reply};
use crio_test::cri::{pull, pull_request};
use crio_test::image::{BuiltLayer, Compression, Image, Layer, RunConfig, host_arch, push_index};
use crio_test::images::{IMAGE_PATH, busybox_layer};
use crio_test::world::{ImageWorld, daemon_for};
use crio_test::{Registry, TestDaemon};
use tonic::Code;

fn spec(name: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: name.to_string(),
        ..ImageSpec::default()
    })
}

async fn list(client: &mut CriClient) -> Vec<crio_api::cri::Image> {
    client
        .image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
}

async fn status(client: &mut CriClient, name: &str) -> Option<crio_api::cri::Image> {
    client
        .image
        .image_status(ImageStatusRequest {
            image: spec(name),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_by_tag_digest_short_name_and_alias() {
    let registry = Registry::start().unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    let aliases = format!("[aliases]\n\"mybox\" = \"{}/test/user\"\n", registry.host());
    let daemon = daemon_for(&registry, &aliases, "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();

    let id = pull(&mut client, &images.busybox.reference).await.unwrap();
    assert_eq!(id, images.busybox.config_digest);
    let image = status(&mut client, &images.busybox.reference)
        .await
        .unwrap();
    assert_eq!(
        image.repo_tags,
        std::slice::from_ref(&images.busybox.reference)
    );
    assert_eq!(
        image.repo_digests,
        std::slice::from_ref(&images.busybox.by_digest)
    );
    assert!(image.size > 500_000, "{}", image.size);
    assert_eq!(image.uid.unwrap().value, 0);

    // By digest: the same image, no new tag.
    let id = pull(&mut client, &images.entrypoint.by_digest)
        .await
        .unwrap();
    assert_eq!(id, images.entrypoint.config_digest);
    let image = status(&mut client, &images.entrypoint.by_digest)
        .await
        .unwrap();
    assert!(image.repo_tags.is_empty(), "{:?}", image.repo_tags);

    // Short name through unqualified-search-registries, and ":latest" implied.
    let id = pull(&mut client, "test/env").await.unwrap();
    assert_eq!(id, images.env.config_digest);
    assert_eq!(
        status(&mut client, "test/env").await.unwrap().repo_tags,
        [format!("{}/test/env:latest", registry.host())]
    );

    // An alias; the image's user is a name, so username is set.
    let id = pull(&mut client, "mybox").await.unwrap();
    assert_eq!(id, images.user.config_digest);
    let image = status(&mut client, "mybox").await.unwrap();
    assert_eq!(image.username, "tester");

    let all = list(&mut client).await;
    assert_eq!(all.len(), 4);
    let filtered = client
        .image
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: spec("test/env"),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, images.env.config_digest);

    // Unknown images: ImageStatus says nothing, PullImage says NotFound.
    assert!(status(&mut client, "test/nothing").await.is_none());
    let err = pull(&mut client, &format!("{}/test/nothing:1", registry.host()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("test/nothing"), "{}", err.message());
    let err = pull(&mut client, "Not A Reference!").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_list_picks_the_host_platform_and_zstd_layers_unpack() {
    let registry = Registry::start().unwrap();
    let base = BuiltLayer::new(busybox_layer().unwrap(), Compression::Zstd);
    let marker = |text: &str| {
        BuiltLayer::new(
            Layer::new().file("platform", 0o644, text.as_bytes()),
            Compression::Gzip,
        )
    };
    let config = RunConfig {
        env: vec![IMAGE_PATH.into()],
        cmd: Some(vec!["sh".into()]),
        ..RunConfig::default()
    };
    let native = Image::new(vec![base.clone(), marker("native")], config.clone())
        .push(&registry, "test/multi", "native")
        .unwrap();
    let mut other = Image::new(vec![base, marker("other")], config);
    other.arch = if host_arch() == "s390x" {
        "amd64"
    } else {
        "s390x"
    }
    .into();
    let foreign = other.push(&registry, "test/multi", "other").unwrap();
    let index = push_index(
        &registry,
        "test/multi",
        "latest",
        &[
            (&foreign, other.arch.as_str(), None),
            (&native, host_arch(), None),
        ],
    )
    .unwrap();

    let daemon = daemon_for(&registry, "", "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    let id = pull(&mut client, &index.reference).await.unwrap();
    assert_eq!(id, native.config_digest);
    let image = status(&mut client, &index.reference).await.unwrap();
    assert_eq!(image.repo_digests, std::slice::from_ref(&index.by_digest));
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_serves_when_the_location_is_unreachable() {
    let registry = Registry::start().unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    // Port 9 (discard) on loopback refuses connections.
    let mirror = format!(
        "[[registry]]\nprefix = \"127.0.0.1:9/test\"\nlocation = \"127.0.0.1:9/test\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{}/test\"\ninsecure = true\n",
        registry.host()
    );
    let daemon = daemon_for(&registry, &mirror, "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    let id = pull(&mut client, "127.0.0.1:9/test/busybox:latest")
        .await
        .unwrap();
    assert_eq!(id, images.busybox.config_digest);
    let image = status(&mut client, "127.0.0.1:9/test/busybox:latest")
        .await
        .unwrap();
    assert_eq!(image.repo_tags, ["127.0.0.1:9/test/busybox:latest"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_and_secure_registries_refuse() {
    let registry = Registry::start().unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    let blocked = format!(
        "[[registry]]\nprefix = \"{}/test/user\"\nlocation = \"{}/test/user\"\nblocked = true\n",
        registry.host(),
        registry.host()
    );
    let daemon = daemon_for(&registry, &blocked, "", &[]).unwrap();
    let mut client = daemon.client().await.unwrap();
    let err = pull(&mut client, &images.user.reference).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("blocked"), "{}", err.message());
    // The rest of the registry still works.
    pull(&mut client, &images.busybox.reference).await.unwrap();
    drop(client);
    drop(daemon);

    // Without insecure = true the registry is spoken to over HTTPS, which a
    // plain HTTP server cannot answer.
    let daemon = crio_test::TestDaemon::start_with_files(
        "[crio.image]\nregistries_conf = \"{dir}/registries.conf\"\n",
        &[],
        &[("registries.conf", "")],
    )
    .unwrap();
    let mut client = daemon.client().await.unwrap();
    let err = pull(&mut client, &images.busybox.reference)
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert!(list(&mut client).await.is_empty());
    drop(client);
    drop(daemon);

    // crio.conf's insecure_registries is enough too.
    let daemon = crio_test::TestDaemon::start_with_files(
        &format!(
            "[crio.image]\nregistries_conf = \"{{dir}}/registries.conf\"\ninsecure_registries = [\"{}\"]\n",
            registry.host()
        ),
        &[],
        &[("registries.conf", "")],
    )
    .unwrap();
    let mut client = daemon.client().await.unwrap();
    pull(&mut client, &images.busybox.reference).await.unwrap();
}

async fn fs(c: &mut CriClient) -> (u64, u64) {
    let r = c
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let f = &r.image_filesystems[0];
    (f.used_bytes.unwrap().value, f.inodes_used.unwrap().value)
}

async fn remove(c: &mut CriClient, name: &str) {
    c.image
        .remove_image(RemoveImageRequest { image: spec(name) })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_untags_then_deletes_and_fs_info_follows() {
    let world = ImageWorld::start("", "").unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let (empty_bytes, empty_inodes) = fs(&mut client).await;

    let host = world.registry.host();
    pull(&mut client, &world.images.busybox.reference)
        .await
        .unwrap();
    // A second tag of the same image.
    let second = format!("{host}/test/busybox:second");
    world
        .registry
        .put_manifest(
            "test/busybox",
            "second",
            &world.images.busybox.media_type,
            &world
                .registry
                .get(
                    "/v2/test/busybox/manifests/latest",
                    &world.images.busybox.media_type,
                )
                .unwrap(),
        )
        .unwrap();
    pull(&mut client, &second).await.unwrap();
    let image = status(&mut client, &second).await.unwrap();
    assert_eq!(image.repo_tags.len(), 2);
    let (bytes, inodes) = fs(&mut client).await;
    assert!(
        bytes > empty_bytes + 1_000_000 && inodes > empty_inodes + 100,
        "{bytes} {inodes}"
    );

    // The whiteout image shares busybox's base layer: only two more layers.
    pull(&mut client, &world.images.whiteout.reference)
        .await
        .unwrap();
    let layers_dir = world.daemon.path("root/layers");
    let layer_count = || {
        std::fs::read_dir(&layers_dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().len() == 64)
            .count()
    };
    assert_eq!(layer_count(), 3);

    remove(&mut client, &second).await;
    let image = status(&mut client, &world.images.busybox.reference)
        .await
        .unwrap();
    assert_eq!(
        image.repo_tags,
        std::slice::from_ref(&world.images.busybox.reference)
    );
    assert!(status(&mut client, &second).await.is_none());

    remove(&mut client, &world.images.busybox.config_digest).await;
    assert!(
        status(&mut client, &world.images.busybox.reference)
            .await
            .is_none()
    );
    // The base layer stays: the whiteout image uses it.
    assert_eq!(layer_count(), 3);
    remove(&mut client, &world.images.whiteout.reference).await;
    assert_eq!(layer_count(), 0);
    assert!(list(&mut client).await.is_empty());
    let (bytes, _) = fs(&mut client).await;
    assert!(bytes < empty_bytes + 100_000, "{bytes} vs {empty_bytes}");
    // Removing what is gone is not an error.
    remove(&mut client, &world.images.whiteout.reference).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crioctl_image_verbs() {
    let world = ImageWorld::start("", "").unwrap();
    let d = &world.daemon;
    let run = |args: &[&str]| {
        let out = d.crioctl(args).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run(&["pull", &world.images.busybox.reference]);
    assert!(out.contains(&world.images.busybox.config_digest), "{out}");
    run(&["pull", "test/env"]);
    let table = run(&["images"]);
    let host = world.registry.host();
    assert!(table.starts_with("IMAGE"), "{table}");
    assert!(
        table.contains(&format!("{host}/test/busybox")) && table.contains("latest"),
        "{table}"
    );
    let quiet = run(&["images", "-q"]);
    assert_eq!(quiet.lines().count(), 2, "{quiet}");
    let digests = run(&["images", "--digests"]);
    assert!(digests.contains("DIGEST"), "{digests}");
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspecti", "test/env"])).unwrap();
    assert_eq!(inspect["status"]["id"], world.images.env.config_digest);
    assert_eq!(
        inspect["info"]["imageSpec"]["config"]["WorkingDir"],
        "/work"
    );
    let fsinfo: serde_json::Value = serde_json::from_str(&run(&["imagefsinfo"])).unwrap();
    assert!(
        fsinfo["image_filesystems"][0]["used_bytes"]["value"]
            .as_u64()
            .unwrap()
            > 0
    );
    let out = run(&["rmi", "test/env"]);
    assert!(out.contains("Deleted: test/env"), "{out}");
    run(&["rmi", "--all"]);
    assert_eq!(run(&["images", "-q"]), "");
    let out = d.crioctl(&["inspecti", "test/env"]).unwrap();
    assert!(!out.status.success());
}

/// A PullImage request for `name` with user name, password and server.
fn pull_with(name: &str, user: &str, password: &str, server_address: &str) -> PullImageRequest {
    let mut req = pull_request(name);
    req.auth = Some(AuthConfig {
        username: user.into(),
        password: password.into(),
        server_address: server_address.into(),
        ..AuthConfig::default()
    });
    req
}

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// A registry that asks for basic credentials, waits `delay` once it has
/// some, and then has nothing.
fn wants_basic_auth(delay: Duration) -> Peer {
    Peer::start(move |r| match r.authorization {
        None => Reply::status(401).header("WWW-Authenticate", r#"Basic realm="peer""#),
        Some(_) => {
            std::thread::sleep(delay);
            Reply::status(404)
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn request_credentials_reach_only_their_registry() {
    let registry = Registry::start_with_auth("alice", "s3cret").unwrap();
    let images = crio_test::images::push_standard_images(&registry).unwrap();
    let other = wants_basic_auth(Duration::ZERO);
    let (a, b) = (registry.host(), other.host());
    // B is searched first for short names, and mirrors A's test/ for
    // qualified ones; the auth file has B's own credentials.
    let conf = format!(
        "short-name-mode = \"permissive\"\n\
         unqualified-search-registries = [\"{b}\", \"{a}\"]\n\
         [[registry]]\nlocation = \"{b}\"\ninsecure = true\n\
         [[registry]]\nlocation = \"{a}\"\ninsecure = true\n\
         [[registry]]\nprefix = \"{a}/test\"\nlocation = \"{a}/test\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{b}/mirror\"\ninsecure = true\n"
    );
    let auth_json = format!(
        r#"{{"auths": {{"{b}": {{"auth": "{}"}}}}}}"#,
        base64::engine::general_purpose::STANDARD.encode("bob:for-b")
    );
    let daemon = TestDaemon::start_with_files(
        "[crio.image]\nregistries_conf = \"{dir}/registries.conf\"\n\
         global_auth_file = \"{dir}/auth.json\"\n",
        &[],
        &[("registries.conf", &conf), ("auth.json", &auth_json)],
    )
    .unwrap();
    let mut client = daemon.client().await.unwrap();

    // A short name with credentials for A: B, searched first, is asked
    // with its own credentials from the auth file, never A's.
    let id = client
        .image
        .pull_image(pull_with("test/busybox", "alice", "s3cret", &a))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, images.busybox.config_digest);
    assert!(
        other
            .seen()
            .iter()
            .any(|r| r.path.contains("/test/busybox/")),
        "B was not searched: {:?}",
        other.seen()
    );
    let only_bob =
        |seen: Vec<String>| !seen.is_empty() && seen.iter().all(|a| *a == basic("bob", "for-b"));
    assert!(only_bob(other.authorizations()), "{:?}", other.seen());

    // A qualified name on A with A's credentials: the mirror on B is
    // tried first and gets only B's own.
    let id = client
        .image
        .pull_image(pull_with(&images.env.reference, "alice", "s3cret", ""))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, images.env.config_digest);
    assert!(
        other.seen().iter().any(|r| r.path.contains("/mirror/env/")),
        "the mirror was not tried: {:?}",
        other.seen()
    );
    assert!(only_bob(other.authorizations()), "{:?}", other.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_with_different_credentials_do_not_share_a_download() {
    // Slow enough that concurrent requests overlap.
    let peer = wants_basic_auth(Duration::from_millis(1500));
    let host = peer.host();
    let daemon = TestDaemon::start_with_files(
        &format!(
            "[crio.image]\nregistries_conf = \"{{dir}}/registries.conf\"\n\
             insecure_registries = [\"{host}\"]\n"
        ),
        &[],
        &[("registries.conf", "")],
    )
    .unwrap();
    let name = format!("{host}/test/private:1");
    let (mut c1, mut c2) = (
        daemon.client().await.unwrap(),
        daemon.client().await.unwrap(),
    );
    let (r1, r2) = tokio::join!(
        c1.image.pull_image(pull_with(&name, "alice", "one", "")),
        c2.image.pull_image(pull_with(&name, "mallory", "two", "")),
    );
    for r in [r1, r2] {
        assert_eq!(r.unwrap_err().code(), tonic::Code::NotFound);
    }
    let mut seen = peer.authorizations();
    seen.sort();
    assert_eq!(seen, [basic("alice", "one"), basic("mallory", "two")]);

    // The same credentials still share one download.
    let (r1, r2) = tokio::join!(
        c1.image.pull_image(pull_with(&name, "alice", "one", "")),
        c2.image.pull_image(pull_with(&name, "alice", "one", "")),
    );
    for r in [r1, r2] {
        assert_eq!(r.unwrap_err().code(), tonic::Code::NotFound);
    }
    assert_eq!(
        peer.authorizations().len(),
        3,
        "{:?}",
        peer.authorizations()
    );
}
