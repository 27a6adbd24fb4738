//! A container's root filesystem: the overlay of its image's layers and a
//! fresh upper dir, the image's VOLUMEs, and the image's user database.
//! Behind [`Rootfs`], so the create path runs in unit tests without root.

use std::path::{Path, PathBuf};

use crio_api::cri::ContainerConfig;
use crio_storage::dirs;
use crio_storage::mount::{Overlay, unmount};

use crate::error::{Error, Result};

/// What CreateContainer does in the container's rootfs, off the async
/// executor: the overlay mount, the image's VOLUMEs, and reading the
/// image's /etc/passwd and /etc/group — each path resolved inside the
/// rootfs by descriptor, since the image may plant links, FIFOs or
/// devices at those names.
pub struct RootfsJob {
    /// The image's layer directories, topmost first.
    pub lowers: Vec<PathBuf>,
    /// The container's directory (upper, work and volume dirs).
    pub store: PathBuf,
    /// Where the rootfs is mounted (in the bundle).
    pub rootfs: PathBuf,
    /// `image_volumes`: "mkdir", "bind" or "ignore".
    pub image_volumes: String,
    /// The image.
    pub image: crio_storage::ImageRecord,
    /// The image's VOLUMEs.
    pub volumes: Vec<String>,
    /// The request.
    pub config: ContainerConfig,
    /// The pod's user namespace: the rootfs and the request's bind mounts
    /// are idmapped through it.
    pub userns: Option<crio_spec::UserNs>,
}

/// What [`RootfsJob`] found and made.
pub struct Prepared {
    /// The request with the image volumes `image_volumes = "bind"` adds.
    pub config: ContainerConfig,
    /// The image's /etc/passwd.
    pub passwd: String,
    /// The image's /etc/group.
    pub group: String,
}

/// Makes and releases root filesystems.
pub trait Rootfs: Send + Sync {
    /// Does `job` (blocking: called off the executor).
    fn prepare(&self, job: RootfsJob) -> Result<Prepared>;
    /// Unmounts a rootfs (nothing when it is not mounted).
    fn release(&self, rootfs: &Path);
}

/// Overlay mounts: the real [`Rootfs`].
pub struct Overlays;

impl Rootfs for Overlays {
    fn prepare(&self, job: RootfsJob) -> Result<Prepared> {
        job.run()
    }

    fn release(&self, rootfs: &Path) {
        let _ = unmount(rootfs);
        if let Some(bundle) = rootfs.parent() {
            crate::userns::release_container(bundle);
        }
    }
}

/// Largest /etc/passwd or /etc/group read from an image.
const MAX_USER_DB: u64 = 4 << 20;

impl RootfsJob {
    /// The container's directories, each with the mode it needs.
    pub fn make_dirs(&self) -> Result<()> {
        let (upper, work) = (self.store.join("upper"), self.store.join("work"));
        let bundle = self.rootfs.parent().unwrap_or(&self.rootfs).to_path_buf();
        // Only root walks into the container's directories; the upper dir
        // becomes the container's `/`, which its non-root user must enter.
        for (d, mode) in [
            (&self.store, dirs::PRIVATE),
            (&upper, dirs::SHARED),
            (&work, dirs::PRIVATE),
            (&bundle, dirs::PRIVATE),
            (&self.rootfs, dirs::PRIVATE),
        ] {
            dirs::ensure(d, mode)
                .map_err(|e| Error::Internal(format!("create {}: {e}", d.display())))?;
        }
        Ok(())
    }

    fn run(mut self) -> Result<Prepared> {
        self.make_dirs()?;
        let (upper, work) = (self.store.join("upper"), self.store.join("work"));
        let lowers = std::mem::take(&mut self.lowers);
        let idmapper = match &self.userns {
            Some(u) => Some(crate::userns::Idmapper::new(&self.rootfs, u)?),
            None => None,
        };
        let overlay = match &idmapper {
            Some(i) => i.overlay(&lowers, upper, work)?,
            None => Overlay {
                lowers,
                upper: Some((upper, work)),
            },
        };
        overlay
            .mount(&self.rootfs)
            .map_err(|e| Error::Internal(format!("mount rootfs: {e}")))?;
        let tree = crio_saferoot::Tree::open(&self.rootfs, crio_saferoot::Scope::InRoot)
            .map_err(|e| Error::Internal(format!("open rootfs: {e}")))?;
        self.add_image_volumes(&tree, idmapper.as_ref())?;
        let image_file = |path: &str| {
            crio_spec::user::read_image_file(&tree, path, MAX_USER_DB)
                .map_err(|e| Error::Precondition(format!("image {}: {e}", self.image.id)))
        };
        let (passwd, group) = (image_file("/etc/passwd")?, image_file("/etc/group")?);
        drop(tree);
        if let Some(i) = &idmapper {
            i.finish(&mut self.config, &self.rootfs)?;
        }
        Ok(Prepared {
            passwd,
            group,
            config: self.config,
        })
    }

    /// The image's VOLUMEs per `image_volumes`: "mkdir" makes them in the
    /// rootfs (the writable layer), "bind" mounts a fresh directory of the
    /// container's there, "ignore" does neither; a path the request mounts
    /// itself is left to that mount.
    fn add_image_volumes(
        &mut self,
        tree: &crio_saferoot::Tree,
        idmapper: Option<&crate::userns::Idmapper>,
    ) -> Result<()> {
        for (i, volume) in self.volumes.iter().enumerate() {
            if self
                .config
                .mounts
                .iter()
                .any(|m| m.container_path == *volume)
            {
                continue;
            }
            match self.image_volumes.as_str() {
                "mkdir" => {
                    // In a user namespace, the directories are its root's.
                    let _mapped = idmapper.map(|i| i.as_mapped_root());
                    tree.mkdir_all(
                        Path::new(volume),
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|e| {
                        Error::Precondition(format!("image {} volume {volume}: {e}", self.image.id))
                    })?;
                }
                "bind" => {
                    let dir = self.store.join("volumes").join(i.to_string());
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| Error::Internal(format!("image volume {volume}: {e}")))?;
                    self.config.mounts.push(crio_api::cri::Mount {
                        container_path: volume.clone(),
                        host_path: dir.display().to_string(),
                        ..Default::default()
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}
