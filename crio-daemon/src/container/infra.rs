//! The infra container of a pod whose containers share its PID namespace
//! (CRI-O's `drop_infra_ctr` behaviour): the pause image, pulled with its
//! own credentials when absent, running as the namespace's PID 1.

use crio_api::cri::{ContainerConfig, ContainerMetadata};

use super::Containers;
use crate::error::{Error, Result};
use crate::pod::PodRecord;

impl Containers {
    /// Creates and starts the infra container of `pod`: the pause image
    /// (pulled and pinned when absent) running `pause_command` (the image's
    /// own command when empty).
    pub async fn run_infra(&self, pod: &PodRecord) -> Result<()> {
        self.shims.check()?;
        let lock = self.locks.of(&format!("infra-{}", pod.id));
        let _held = lock.lock().await;
        if self.infra_of(&pod.id).is_some() {
            return Ok(());
        }
        let image = &self.image_config();
        let pause = match self.images.find(&image.pause_image) {
            Some(found) => found,
            None => self
                .images
                .pull(&image.pause_image, pause_credentials(image)?, true)
                .await
                .map_err(|e| Error::PauseImage {
                    image: image.pause_image.clone(),
                    source: Box::new(e),
                })?,
        };
        let config = infra_config(pod, pause.id.as_str(), &image.pause_command);
        let id = self.create_as(&pod.id, config, true).await?;
        self.start(&id).await
    }

    /// The pause image settings infra containers start with now.
    pub fn image_config(&self) -> crio_config::ImageConfig {
        self.image_config.read().clone()
    }

    /// Replaces the pause image settings (a SIGHUP reload); pods already
    /// running keep their infra container.
    pub fn set_image_config(&self, config: crio_config::ImageConfig) {
        *self.image_config.write() = config;
    }
}

/// Credentials for pulling the pause image, from `pause_image_auth_file`
/// when it is set (else the pull uses the global auth file, if any); they
/// are for the pause image's own registry, not its mirrors.
fn pause_credentials(
    image: &crio_config::ImageConfig,
) -> Result<Option<crio_image::auth::RequestCredentials>> {
    let file = &image.pause_image_auth_file;
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    let auth = crio_image::auth::AuthFile::load(file).map_err(|e| {
        Error::Precondition(format!("pause_image_auth_file {}: {e}", file.display()))
    })?;
    let r = crio_image::reference::Reference::parse(&image.pause_image)
        .map_err(|e| Error::Invalid(format!("pause_image {:?}: {e}", image.pause_image)))?;
    Ok(Some(crio_image::auth::RequestCredentials {
        credentials: auth.lookup(&r.registry, &r.repository),
        server: None,
    }))
}

/// The infra container's configuration: named `POD` (CRI-O's
/// `k8s_POD_…`), the pause image, a PID namespace of its own (which the
/// pod's containers join), a read-only rootfs, no log.
fn infra_config(pod: &PodRecord, image_id: &str, command: &str) -> ContainerConfig {
    use crio_api::cri::{
        ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext, NamespaceMode,
        NamespaceOption,
    };
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "POD".into(),
            attempt: pod.metadata().attempt,
        }),
        image: Some(ImageSpec {
            image: image_id.into(),
            ..Default::default()
        }),
        command: if command.is_empty() {
            Vec::new()
        } else {
            vec![command.into()]
        },
        labels: pod.config.labels.clone(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                readonly_rootfs: true,
                no_new_privs: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
