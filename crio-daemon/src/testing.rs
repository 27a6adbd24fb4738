//! A daemon core for unit tests: pods, images and containers in a temporary
//! directory, over fake shims and a fake rootfs, so no root is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crio_api::cri::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata,
};
use parking_lot::Mutex;

use crate::container::{Collaborators, Containers, Prepared, Rootfs, RootfsJob};
use crate::error::{Error, Result};
use crate::images::Images;
use crate::pod::{Pods, Sandboxes};
use crate::shim::fake::FakeShims;

/// A rootfs that is only directories: it records what it prepared and
/// released, and fails when told to.
#[derive(Default)]
pub struct FakeRootfs {
    /// Rootfs paths prepared, in order.
    pub prepared: Mutex<Vec<PathBuf>>,
    /// Rootfs paths released, in order.
    pub released: Mutex<Vec<PathBuf>>,
    /// Fail the next prepare.
    pub fail: Mutex<bool>,
}

impl Rootfs for FakeRootfs {
    fn prepare(&self, job: RootfsJob) -> Result<Prepared> {
        if std::mem::take(&mut *self.fail.lock()) {
            return Err(Error::Internal("mount rootfs: injected".into()));
        }
        job.make_dirs()?;
        self.prepared.lock().push(job.rootfs.clone());
        Ok(Prepared {
            config: job.config,
            passwd: "root:x:0:0:root:/root:/bin/sh\n".into(),
            group: "root:x:0:\n".into(),
        })
    }

    fn release(&self, rootfs: &Path) {
        self.released.lock().push(rootfs.to_path_buf());
    }
}

/// The daemon core in a temporary directory.
pub struct World {
    /// Where everything is.
    pub dir: tempfile::TempDir,
    /// The fake shims.
    pub shims: FakeShims,
    /// The fake rootfs.
    pub rootfs: Arc<FakeRootfs>,
    /// Pods.
    pub pods: Arc<Pods>,
    /// Containers.
    pub containers: Arc<Containers>,
    /// Pods with their containers.
    pub sandboxes: Arc<Sandboxes>,
    /// The ID of the test image.
    pub image: String,
}

fn config(dir: &Path) -> crio_config::Config {
    let registries = dir.join("registries.conf");
    std::fs::write(&registries, "").unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let mut config = crio_config::Config {
        root: dir.join("root"),
        runroot: dir.join("run"),
        ..Default::default()
    };
    config.runtime.namespaces_dir = dir.join("ns");
    config.runtime.seccomp_profile = PathBuf::new();
    config.image.registries_conf = registries;
    config.image.signature_policy = policy;
    config.image.pause_image = "localhost/test:1".into();
    config
}

impl World {
    /// A fresh world with one image (no layers).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let shims = FakeShims::new(&dir.path().join("shims"));
        let rootfs = Arc::new(FakeRootfs::default());
        let locator = crate::handlers::Locator {
            own_exe: None,
            path_env: "",
        };
        let handlers =
            crate::handlers::Handlers::configured(&config, &Default::default(), &locator);
        let pods =
            Arc::new(Pods::open(&config, Arc::new(shims.clone()), Arc::new(handlers)).unwrap());
        let images = Arc::new(Images::open(&config).unwrap());
        let image = images
            .store()
            .add(crio_storage::ImageRecord {
                id: crio_storage::digest::Digest::of(b"test image config"),
                repo_tags: vec!["localhost/test:1".into()],
                repo_digests: Vec::new(),
                size: 0,
                layers: Vec::new(),
                config: serde_json::json!({"config": {"Cmd": ["sh"]}}),
                pinned: false,
                pulled_at: 0,
            })
            .unwrap();
        let with = Collaborators {
            pods: pods.clone(),
            images: images.clone(),
            shims: Arc::new(shims.clone()),
            rootfs: rootfs.clone(),
        };
        let containers = Arc::new(Containers::open(&config, with).unwrap());
        let sandboxes = Sandboxes::new(
            pods.clone(),
            containers.clone(),
            Arc::new(shims.clone()),
            true,
        );
        Self {
            dir,
            shims,
            rootfs,
            pods,
            containers,
            sandboxes,
            image: image.id.to_string(),
        }
    }

    /// A ready pod on the host's namespaces (nothing to pin, no CNI).
    pub async fn pod(&self, name: &str) -> String {
        self.pods
            .run(pod_config(name), String::new())
            .await
            .unwrap()
    }

    /// A container request for the test image.
    pub fn container(&self, name: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        }
    }

    /// The bundle directory of a container.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join("run/containers").join(id)
    }
}

/// A pod request on the host's network and IPC namespaces.
pub fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ipc: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
