//! CreateContainer: the request checked, the name reserved (a retry gets
//! the same container), the rootfs made, the OCI spec written to the
//! bundle, the task created in the pod's shim, the record saved. A failed
//! step removes everything before it.

use std::path::{Path, PathBuf};

use crio_api::cri::ContainerConfig;
use crio_contract::annotations;
use tracing::Instrument;

use super::store::Reservation;
use super::{ContainerRecord, ContainerState, Containers, RootfsJob};
use crate::error::{Error, Result};
use crate::ids::Id;
use crate::pod::{PodRecord, PodState};
use crate::shim::TaskStatus;

/// One create under way: what `build` makes a container of.
struct Creation<'a> {
    id: &'a Id,
    name: &'a str,
    pod: &'a PodRecord,
    /// The request as made (kept in the record: a retry is compared with it).
    request: &'a ContainerConfig,
    image: &'a crio_storage::ImageRecord,
    /// Its runtime configuration.
    image_config: &'a crio_spec::ImageConfig,
    /// The image as the request names it.
    image_name: &'a str,
    infra: bool,
    /// Where the create is, for its retries.
    stage: &'a crate::steps::Stage,
}

/// The OCI spec of a container, written to its bundle, and what its
/// record keeps of it.
struct Written {
    log_path: String,
    stop_signal: u32,
    user: crio_spec::oci::User,
    /// With a terminal.
    tty: bool,
}

impl Containers {
    /// CreateContainer.
    pub async fn create(&self, pod_id: &str, config: ContainerConfig) -> Result<String> {
        self.shims.check()?;
        self.create_as(pod_id, config, false).await
    }

    pub(super) async fn create_as(
        &self,
        pod_id: &str,
        config: ContainerConfig,
        infra: bool,
    ) -> Result<String> {
        let pod = self
            .pods
            .get(pod_id)
            .ok_or_else(|| Error::not_found("pod sandbox", pod_id))?;
        if pod.state != PodState::Ready {
            return Err(Error::Precondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let md = config
            .metadata
            .clone()
            .ok_or_else(|| Error::field("config.metadata", "is required"))?;
        if md.name.is_empty() {
            return Err(Error::field("config.metadata.name", "must not be empty"));
        }
        check_log_path(&config.log_path)?;
        crate::userns::check_container(
            config
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.as_ref()),
            crate::userns::pod_map(&pod.config)?,
        )?;
        let pmd = pod.metadata();
        let name = format!(
            "k8s_{}_{}_{}_{}_{}",
            md.name, pmd.name, pmd.namespace, pmd.uid, md.attempt
        );
        let (tx, _reserved, stage) = match self
            .reserve(&name, crate::records::canonical(&config))?
        {
            Reservation::Exists(id) => return Ok(id),
            // A retry of a create still under way (kubelet gave up
            // waiting): the same container when it is done.
            Reservation::InFlight(mut done) => {
                let outcome = done
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| Error::Aborted("the first CreateContainer was cancelled".into()))?
                    .clone();
                return outcome
                    .unwrap_or_else(|| Err(Error::Aborted("container creation stopped".into())));
            }
            Reservation::Mine(tx, reserved, stage) => (tx, reserved, stage),
        };
        let result = self
            .create_reserved(&pod, &name, &config, infra, &stage)
            .await;
        let _ = tx.send(Some(result.clone()));
        result
    }

    async fn create_reserved(
        &self,
        pod: &PodRecord,
        name: &str,
        config: &ContainerConfig,
        infra: bool,
        stage: &crate::steps::Stage,
    ) -> Result<String> {
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self.images.find(&image_name).ok_or_else(|| {
            Error::Missing(format!(
                "config.image: image {image_name:?} is not present; pull it first"
            ))
        })?;
        let image_config = crio_image::config::runtime_config(&image.config)
            .map_err(|e| Error::Precondition(format!("image {}: {e}", image.id)))?;
        let id = Id::random();
        let creation = Creation {
            id: &id,
            name,
            pod,
            request: config,
            image: &image,
            image_config: &image_config,
            image_name: &image_name,
            infra,
            stage,
        };
        let result = self.build(&creation).await;
        if let Err(e) = &result {
            tracing::warn!(container = %id, "CreateContainer failed, cleaning up: {e}");
            self.cleanup(&id);
        }
        result.map(|()| id.to_string())
    }

    /// The steps of a create; `cleanup` undoes them when one fails.
    async fn build(&self, c: &Creation<'_>) -> Result<()> {
        let mut steps = crate::steps::Steps::default();
        let step = crate::telemetry::step;
        c.stage.set("container storage creation");
        let prepared = self.prepare_rootfs(c).instrument(step("rootfs")).await?;
        steps.mark("rootfs");
        c.stage.set("container spec configuration");
        let written = self
            .write_spec(c, prepared)
            .instrument(step("spec"))
            .await?;
        let record = ContainerRecord {
            id: c.id.clone(),
            pod_id: c.pod.id.clone(),
            name: c.name.to_string(),
            config: c.request.clone(),
            image_id: c.image.id.to_string(),
            image_ref: c.image_name.to_string(),
            created_at: crio_api::time::now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            state: ContainerState::Created,
            oom_killed: false,
            message: String::new(),
            log_path: written.log_path,
            stop_signal: written.stop_signal,
            infra: c.infra,
            user: Some(written.user),
            pid: 0,
            pid_start: 0,
            reason: String::new(),
            orphaned: false,
        };
        steps.mark("spec");
        c.stage.set("container runtime creation");
        let pod = c.pod;
        // A new shim for a pod whose shim died does not know its containers.
        if !self.shim_alive(&pod.id) {
            self.orphan_containers_of(&pod.id);
        }
        let client = self
            .shims
            .ensure(
                &pod.id,
                &self.pods.run_dir(&pod.id),
                &pod.cgroup_parent(),
                &pod.runtime_handler,
            )
            .instrument(step("pod shim"))
            .await?;
        steps.mark("shim");
        client
            .create(c.id, &self.bundle(c.id), written.tty)
            .instrument(step("task create"))
            .await
            .map_err(Error::task("create task"))?;
        steps.mark("task");
        step("record").in_scope(|| self.save_new(&record))?;
        steps.mark("record");
        tracing::debug!(container = %c.id, steps = %steps.summary(), "container created");
        Ok(())
    }

    /// The rootfs, off the executor (mounts and file reads block).
    async fn prepare_rootfs(&self, c: &Creation<'_>) -> Result<super::Prepared> {
        let lowers = self
            .images
            .layer_paths(c.image)
            .map_err(|e| Error::Precondition(format!("image {}: {e}", c.image.id)))?;
        check_propagation(c.request)?;
        let job = RootfsJob {
            lowers,
            store: self.records_dir.join(c.id.as_str()),
            rootfs: self.rootfs_dir(c.id),
            image_volumes: self.defaults.read().image_volumes.clone(),
            image: c.image.clone(),
            volumes: crio_spec::image_volumes(c.image_config),
            config: c.request.clone(),
            userns: crate::userns::of_pod(c.pod, &self.pods.namespaces_dir()),
        };
        let usage = self.images.usage().clone();
        let measured = c.id.to_string();
        let rootfs = self.rootfs.clone();
        tokio::task::spawn_blocking(move || {
            let prepared = rootfs.prepare(job)?;
            // Its writable layer has figures from the start.
            usage.measure_container(&measured);
            Ok::<_, Error>(prepared)
        })
        .await
        .map_err(Error::internal)?
    }

    /// Builds the OCI spec and writes it to the bundle as config.json.
    async fn write_spec(&self, c: &Creation<'_>, prepared: super::Prepared) -> Result<Written> {
        let (id, pod) = (c.id, c.pod);
        let pod_dir = self.pods.run_dir(&pod.id);
        let ns_dir = &self.pods.namespaces_dir();
        let pin = |kind: crio_network::netns::Kind| {
            pod.kinds()
                .contains(&kind)
                .then(|| crio_network::netns::pin_path(ns_dir, kind, &pod.id))
        };
        let config = &prepared.config;
        let mut host = self.host.clone();
        if self
            .pods
            .handler_of(pod)
            .is_some_and(|h| h.privileged_without_host_devices)
        {
            host.devices.clear();
        }
        host.passwd = prepared.passwd.clone();
        host.group = prepared.group.clone();
        let mut rootfs = self.rootfs_dir(id);
        let defaults = self.defaults.read().clone();
        let userns = crate::userns::of_pod(pod, ns_dir);
        let mut files_dir = pod_dir;
        // The mapped root sees its pod's files idmapped, and reaches its
        // rootfs where it is exposed to it.
        if userns.is_some() {
            files_dir = crate::userns::pod_files_dir(&files_dir);
            rootfs = crate::userns::exposed_rootfs(&self.bundle(id));
        }
        let mut spec = crio_spec::build(&crio_spec::Input {
            id,
            config,
            image: c.image_config,
            rootfs: &rootfs,
            pod: crio_spec::Pod {
                config: &pod.config,
                files_dir,
                shm: pod.shm.clone(),
                netns: pin(crio_network::netns::Kind::Net),
                ipcns: pin(crio_network::netns::Kind::Ipc),
                utsns: pin(crio_network::netns::Kind::Uts),
                pidns: self.pid_namespace(pod, config).await?,
                cgroup_parent: pod.cgroup_parent(),
                userns,
            },
            defaults: &defaults,
            host: &host,
        })
        .map_err(|e| match e {
            crio_spec::SpecError::Invalid { .. } => Error::Invalid(e.to_string()),
            crio_spec::SpecError::Missing { .. } => Error::Missing(e.to_string()),
        })?;
        check_lsm(id, config, &spec, self.host.lsm)?;
        let log_path = self.annotate(&mut spec, pod, config);
        let stop_signal =
            crio_spec::stop_signal(c.image_config).map_err(|e| Error::Invalid(e.to_string()))?;
        let json = serde_json::to_vec_pretty(&spec).map_err(Error::internal)?;
        std::fs::write(self.bundle(id).join("config.json"), json).map_err(Error::internal)?;
        Ok(Written {
            log_path,
            stop_signal,
            user: spec
                .process()
                .as_ref()
                .map(|p| p.user().clone())
                .unwrap_or_default(),
            tty: config.tty,
        })
    }

    /// The annotations: the handler's `default_annotations` and those the
    /// shim reads (log, stdio); the log path.
    fn annotate(
        &self,
        spec: &mut crio_spec::oci::Spec,
        pod: &PodRecord,
        config: &ContainerConfig,
    ) -> String {
        let log_path = if config.log_path.is_empty() || pod.config.log_directory.is_empty() {
            String::new()
        } else {
            Path::new(&pod.config.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        let spec_annotations = spec.annotations_mut().get_or_insert_with(Default::default);
        // The handler's defaults, where the request set none.
        let handler_defaults = self.pods.handler_of(pod).map(|h| h.default_annotations);
        for (key, value) in handler_defaults.into_iter().flatten() {
            spec_annotations.entry(key).or_insert(value);
        }
        spec_annotations.insert(annotations::LOG_PATH.into(), log_path.clone());
        if !log_path.is_empty() {
            // The shim resolves the log path below it, following no symlink.
            spec_annotations.insert(
                annotations::LOG_DIRECTORY.into(),
                pod.config.log_directory.clone(),
            );
        }
        if self.log_size_max > 0 {
            spec_annotations.insert(
                annotations::LOG_SIZE_MAX.into(),
                self.log_size_max.to_string(),
            );
        }
        for (key, on) in [
            (annotations::STDIN, config.stdin),
            (annotations::STDIN_ONCE, config.stdin_once),
            (annotations::TTY, config.tty),
        ] {
            spec_annotations.insert(key.into(), on.to_string());
        }
        log_path
    }

    /// `/proc/<pid>/ns/pid` of a running container's init.
    async fn pidns_of(&self, r: &ContainerRecord) -> Option<PathBuf> {
        let client = self.client(r).await.ok()?;
        let state = client.state(&r.id).await.ok()?;
        (state.status == TaskStatus::Running && state.pid > 0)
            .then(|| PathBuf::from(format!("/proc/{}/ns/pid", state.pid)))
    }

    /// The PID namespace a container joins: its target container's for
    /// TARGET (kubectl debug --target), the pod's infra container's for POD
    /// (None when the pod has none); None for a namespace of its own (no
    /// shim call on that, the common, path).
    async fn pid_namespace(
        &self,
        pod: &PodRecord,
        config: &ContainerConfig,
    ) -> Result<Option<PathBuf>> {
        let ns = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let field = "config.linux.security_context.namespace_options.target_id";
        match ns {
            Some(n) if n.pid == crio_api::cri::NamespaceMode::Target as i32 => {
                let target = self
                    .get(&n.target_id)
                    .filter(|t| !n.target_id.is_empty() && t.pod_id == pod.id && !t.infra)
                    .ok_or_else(|| {
                        Error::Missing(format!(
                            "{field}: no container {:?} in pod {}",
                            n.target_id, pod.id
                        ))
                    })?;
                match self.pidns_of(&target).await {
                    Some(path) => Ok(Some(path)),
                    None => Err(Error::Precondition(format!(
                        "{field}: container {} is not running",
                        target.id
                    ))),
                }
            }
            // No namespace options mean a PID namespace of its own.
            Some(n) if n.pid == crio_api::cri::NamespaceMode::Pod as i32 => {
                match self.infra_of(&pod.id) {
                    Some(infra) => Ok(self.pidns_of(&infra).await),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }
}

/// Warns about security options the host cannot apply, and refuses an
/// AppArmor profile that is not loaded (the runtime would fail later,
/// less clearly).
fn check_lsm(
    id: &str,
    config: &ContainerConfig,
    spec: &crio_spec::oci::Spec,
    host: crio_spec::lsm::Lsm,
) -> Result<()> {
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    for module in crio_spec::lsm::unapplied(&sc, host) {
        tracing::warn!(
            container = id,
            "{module} options requested but {module} is unavailable on this host: not applied"
        );
    }
    match spec
        .process()
        .as_ref()
        .and_then(|p| p.apparmor_profile().as_ref())
    {
        Some(p) if p != "unconfined" => {
            let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
                .is_ok_and(|t| crio_spec::lsm::apparmor_loaded(&t, p));
            if loaded {
                Ok(())
            } else {
                Err(Error::Precondition(format!(
                    "config.linux.security_context.apparmor: AppArmor profile {p:?} is not loaded"
                )))
            }
        }
        _ => Ok(()),
    }
}

/// Refuses a mount whose propagation its host mount cannot give (see
/// `crio_spec::propagation`).
fn check_propagation(config: &ContainerConfig) -> Result<()> {
    let private = crio_api::cri::MountPropagation::PropagationPrivate as i32;
    if config.mounts.iter().all(|m| m.propagation == private) {
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::internal)?;
    for (i, m) in config.mounts.iter().enumerate() {
        let host =
            std::fs::canonicalize(&m.host_path).unwrap_or_else(|_| m.host_path.clone().into());
        crio_spec::propagation::check(&mountinfo, &host, m.propagation)
            .map_err(|e| Error::field(&format!("config.mounts[{i}].propagation"), e))?;
    }
    Ok(())
}

/// The shim writes the log as root at `log_directory`/`log_path`: the path
/// must stay below the directory, as CRI-O requires (no absolute path, no
/// `..`, a file name last).
pub(super) fn check_log_path(log_path: &str) -> Result<()> {
    use std::path::Component;
    let path = Path::new(log_path);
    let below = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if below && (log_path.is_empty() || (!log_path.ends_with('/') && path.file_name().is_some())) {
        return Ok(());
    }
    Err(Error::field(
        "config.log_path",
        format!(
            "{log_path:?} must be a file path relative to the pod's log_directory, without \"..\""
        ),
    ))
}
