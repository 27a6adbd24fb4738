//! Containers: the rootfs (an overlay of the image's layers and a fresh
//! upper dir), the OCI bundle (config.json from crio-spec), and the life
//! cycle through the pod's shim. Records live in `root/containers/<id>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use crio_api::Status;
use crio_api::cri::{ContainerConfig, ContainerMetadata};
use crio_api::task::{self, ttrpc};
use crio_contract::EXEC_SYNC_OUTPUT_MAX;
use crio_contract::annotations;
use crio_contract::bundle::{EXIT_FILE, OOM_FILE, parse_exit_record};
use crio_storage::mount::{Overlay, unmount};
use crio_storage::{atomic, dirs};
use serde::{Deserialize, Serialize};

use crate::ids::Id;
use crate::images::Images;
use crate::pods::{PodRecord, PodState, Pods};
use crate::records::Records;
use crate::shim::Shims;

/// A container's state as the daemon last knew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Started.
    Running,
    /// Its process has exited.
    Exited,
}

/// What is kept about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container ID.
    pub id: Id,
    /// Its pod.
    pub pod_id: Id,
    /// The reserved name.
    pub name: String,
    /// The kubelet's request.
    pub config: ContainerConfig,
    /// The image ID.
    pub image_id: String,
    /// The image reference it was created from.
    pub image_ref: String,
    /// Times, CRI nanoseconds (0 = not yet).
    pub created_at: i64,
    /// Start time.
    pub started_at: i64,
    /// Exit time.
    pub finished_at: i64,
    /// Exit code.
    pub exit_code: i32,
    /// State.
    pub state: ContainerState,
    /// Killed for exceeding its memory limit.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the state is what it is, when that needs saying.
    #[serde(default)]
    pub message: String,
    /// The log file.
    pub log_path: String,
    /// The signal that stops it (the image's StopSignal; 0: SIGTERM).
    #[serde(default)]
    pub stop_signal: u32,
    /// The pod's infra container (holds a shared PID namespace; not listed).
    #[serde(default)]
    pub infra: bool,
    /// The identity its process runs with (from the OCI spec).
    #[serde(default)]
    pub user: Option<crio_spec::oci::User>,
    /// Its init's pid once started (0 before).
    #[serde(default)]
    pub pid: u32,
}

impl ContainerRecord {
    /// Metadata.
    pub fn metadata(&self) -> ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(30_000_000_000)
}

fn task_error(what: &str, e: ttrpc::Error) -> Status {
    match &e {
        ttrpc::Error::RpcStatus(s) if s.code() == ttrpc::Code::NOT_FOUND => {
            Status::not_found(format!("{what}: {}", s.message()))
        }
        ttrpc::Error::RpcStatus(s) => Status::unknown(format!("{what}: {}", s.message())),
        other => Status::unavailable(format!("{what}: {other}")),
    }
}

/// An exec process created in a container's shim.
pub struct Exec {
    client: task::TaskClient,
    container: ContainerRecord,
    /// The exec ID.
    pub id: String,
}

impl Exec {
    /// The container the process runs in (the full ID a request's prefix named).
    pub fn container_id(&self) -> &Id {
        &self.container.id
    }

    fn key(&self) -> (String, String) {
        (self.container.id.to_string(), self.id.clone())
    }

    /// Starts the process.
    pub async fn start(&self) -> Result<(), Status> {
        let (id, exec_id) = self.key();
        let req = task::StartRequest {
            id,
            exec_id,
            ..Default::default()
        };
        self.client
            .start(ctx(), &req)
            .await
            .map(|_| ())
            .map_err(|e| task_error("start exec", e))
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&self) {
        let (id, exec_id) = self.key();
        let kill = task::KillRequest {
            id: id.clone(),
            exec_id: exec_id.clone(),
            signal: 9,
            ..Default::default()
        };
        let _ = self.client.kill(ctx(), &kill).await;
        let wait = task::WaitRequest {
            id,
            exec_id,
            ..Default::default()
        };
        let _ = self.client.wait(ctx(), &wait).await;
    }

    /// Forgets the process in the shim.
    pub async fn delete(&self) {
        let (id, exec_id) = self.key();
        let req = task::DeleteRequest {
            id,
            exec_id,
            ..Default::default()
        };
        let _ = self.client.delete(ctx(), &req).await;
    }
}

/// Outcome of a CreateContainer, shared with its retries.
type CreateOutcome = Option<Result<String, (crio_api::Code, String)>>;

/// Names being created: the request (JSON) and its outcome to come.
type Pending = std::sync::Mutex<
    std::collections::HashMap<String, (String, tokio::sync::watch::Receiver<CreateOutcome>)>,
>;

/// Frees a name reserved for a create when the create ends, however it ends.
struct Reserved<'a>(&'a Pending, String);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// The containers of this daemon.
pub struct Containers {
    /// Names of creates under way.
    pending: Pending,
    /// One lock per container: calls on the same container run one at a
    /// time, calls on different ones in parallel.
    locks:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    records_dir: PathBuf,
    run_dir: PathBuf,
    records: Records<ContainerRecord>,
    host: crio_spec::Host,
    defaults: crio_spec::Defaults,
    /// `log_size_max`: the shim keeps each container's CRI log at or under
    /// it (≤ 0: no limit).
    log_size_max: i64,
}

/// What CreateContainer does in the container's rootfs, off the async
/// executor: the overlay mount, the image's VOLUMEs, and reading the
/// image's /etc/passwd and /etc/group — each path resolved inside the
/// rootfs by descriptor, since the image may plant links, FIFOs or
/// devices at those names.
struct RootfsJob {
    lowers: Vec<PathBuf>,
    store: PathBuf,
    rootfs: PathBuf,
    image_volumes: String,
    image: crio_storage::ImageRecord,
    config: ContainerConfig,
}

/// What [`RootfsJob`] found and made.
struct Prepared {
    /// The request with the image volumes `image_volumes = "bind"` adds.
    config: ContainerConfig,
    passwd: String,
    group: String,
}

/// Largest /etc/passwd or /etc/group read from an image.
const MAX_USER_DB: u64 = 4 << 20;

impl RootfsJob {
    fn run(mut self) -> Result<Prepared, Status> {
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
            dirs::ensure(d, mode).map_err(|e| internal(format!("create {}: {e}", d.display())))?;
        }
        Overlay {
            lowers: std::mem::take(&mut self.lowers),
            upper: Some((upper, work)),
        }
        .mount(&self.rootfs)
        .map_err(|e| internal(format!("mount rootfs: {e}")))?;
        let tree = crio_saferoot::Tree::open(&self.rootfs, crio_saferoot::Scope::InRoot)
            .map_err(|e| internal(format!("open rootfs: {e}")))?;
        self.add_image_volumes(&tree)?;
        let image_file = |path: &str| {
            crio_spec::user::read_image_file(&tree, path, MAX_USER_DB)
                .map_err(|e| Status::failed_precondition(format!("image {}: {e}", self.image.id)))
        };
        Ok(Prepared {
            passwd: image_file("/etc/passwd")?,
            group: image_file("/etc/group")?,
            config: self.config,
        })
    }

    /// The image's VOLUMEs per `image_volumes`: "mkdir" makes them in the
    /// rootfs (the writable layer), "bind" mounts a fresh directory of the
    /// container's there, "ignore" does neither; a path the request mounts
    /// itself is left to that mount.
    fn add_image_volumes(&mut self, tree: &crio_saferoot::Tree) -> Result<(), Status> {
        for (i, volume) in crio_spec::image_volumes(&self.image.config)
            .iter()
            .enumerate()
        {
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
                    tree.mkdir_all(
                        Path::new(volume),
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|e| {
                        Status::failed_precondition(format!(
                            "image {} volume {volume}: {e}",
                            self.image.id
                        ))
                    })?;
                }
                "bind" => {
                    let dir = self.store.join("volumes").join(i.to_string());
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| internal(format!("image volume {volume}: {e}")))?;
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

/// Removes what a crash left of containers that have no record (a create
/// killed half-way): the runtime's container, the rootfs mount, the bundle
/// and the writable layer.
fn sweep_orphans(
    config: &crio_config::Config,
    records_dir: &Path,
    run_dir: &Path,
    records: &BTreeMap<String, ContainerRecord>,
) {
    let ids = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| !records.contains_key(id))
            .collect()
    };
    let runtime = config.runtime.runtimes.get(&config.runtime.default_runtime);
    for id in ids(run_dir) {
        if let Some(h) = runtime {
            let _ = std::process::Command::new(&h.runtime_path)
                .arg("--root")
                .arg(&h.runtime_root)
                .args(["delete", "--force", &id])
                .output();
        }
        let bundle = run_dir.join(&id);
        let _ = unmount(&bundle.join("rootfs"));
        match std::fs::remove_dir_all(&bundle) {
            Ok(()) => {
                tracing::info!(container = %id, "removed the bundle of a container without a record")
            }
            Err(e) => tracing::warn!(container = %id, "remove orphaned bundle: {e}"),
        }
    }
    for id in ids(records_dir) {
        if let Err(e) = std::fs::remove_dir_all(records_dir.join(&id)) {
            tracing::warn!(container = %id, "remove orphaned container directory: {e}");
        }
    }
}

/// The security modules containers get: the host's, SELinux only when the
/// `selinux` option asks for it.
pub fn host_lsm(config: &crio_config::Config) -> crio_spec::lsm::Lsm {
    let mut lsm = crio_spec::lsm::Lsm::detect(Path::new("/sys"));
    lsm.selinux &= config.runtime.selinux;
    lsm
}

/// Warns about security options the host cannot apply, and refuses an
/// AppArmor profile that is not loaded (the runtime would fail later,
/// less clearly).
fn check_lsm(
    id: &str,
    config: &ContainerConfig,
    spec: &crio_spec::oci::Spec,
    host: crio_spec::lsm::Lsm,
) -> Result<(), Status> {
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
    match &spec.process.apparmor_profile {
        Some(p) if p != "unconfined" => {
            let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
                .is_ok_and(|t| crio_spec::lsm::apparmor_loaded(&t, p));
            if loaded {
                Ok(())
            } else {
                Err(Status::failed_precondition(format!(
                    "config.linux.security_context.apparmor: AppArmor profile {p:?} is not loaded"
                )))
            }
        }
        _ => Ok(()),
    }
}

/// Refuses a mount whose propagation its host mount cannot give (see
/// `crio_spec::propagation`).
fn check_propagation(config: &ContainerConfig) -> Result<(), Status> {
    let private = crio_api::cri::MountPropagation::PropagationPrivate as i32;
    if config.mounts.iter().all(|m| m.propagation == private) {
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(internal)?;
    for (i, m) in config.mounts.iter().enumerate() {
        let host =
            std::fs::canonicalize(&m.host_path).unwrap_or_else(|_| m.host_path.clone().into());
        crio_spec::propagation::check(&mountinfo, &host, m.propagation).map_err(|e| {
            crio_api::status::invalid_field(&format!("config.mounts[{i}].propagation"), e)
        })?;
    }
    Ok(())
}

/// Credentials for pulling the pause image, from `pause_image_auth_file`
/// when it is set (else the pull uses the global auth file, if any); they
/// are for the pause image's own registry, not its mirrors.
fn pause_credentials(
    image: &crio_config::ImageConfig,
) -> Result<Option<crio_image::auth::RequestCredentials>, Status> {
    let file = &image.pause_image_auth_file;
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    let auth = crio_image::auth::AuthFile::load(file).map_err(|e| {
        Status::failed_precondition(format!("pause_image_auth_file {}: {e}", file.display()))
    })?;
    let r = crio_image::reference::Reference::parse(&image.pause_image).map_err(|e| {
        Status::invalid_argument(format!("pause_image {:?}: {e}", image.pause_image))
    })?;
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

/// The shim writes the log as root at `log_directory`/`log_path`: the path
/// must stay below the directory, as CRI-O requires (no absolute path, no
/// `..`, a file name last).
fn check_log_path(log_path: &str) -> Result<(), Status> {
    use std::path::Component;
    let path = Path::new(log_path);
    let below = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if below && (log_path.is_empty() || (!log_path.ends_with('/') && path.file_name().is_some())) {
        return Ok(());
    }
    Err(crio_api::status::invalid_field(
        "config.log_path",
        format!(
            "{log_path:?} must be a file path relative to the pod's log_directory, without \"..\""
        ),
    ))
}

/// An ExecSync output file as the shim left it: at most
/// [`EXEC_SYNC_OUTPUT_MAX`] bytes are read, whatever the file holds.
fn read_exec_output(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(EXEC_SYNC_OUTPUT_MAX).read_to_end(&mut buf);
    }
    buf
}

/// The capabilities this process may grant (its bounding set).
fn bounding_set() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    crio_config::KNOWN_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

impl Containers {
    /// Loads the records under `root/containers`.
    pub fn open(config: &crio_config::Config) -> anyhow::Result<Self> {
        let records_dir = config.root.join("containers");
        let run_dir = config.runroot.join("containers");
        for d in [&records_dir, &run_dir] {
            dirs::ensure(d, dirs::PRIVATE).with_context(|| format!("create {}", d.display()))?;
        }
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(&records_dir)?.flatten() {
            if let Some(r) = std::fs::read(entry.path().join("record.json"))
                .ok()
                .and_then(|d| serde_json::from_slice::<ContainerRecord>(&d).ok())
            {
                records.insert(r.id.to_string(), r);
            }
        }
        sweep_orphans(config, &records_dir, &run_dir, &records);
        let rt = &config.runtime;
        let host = crio_spec::Host {
            bounding: bounding_set(),
            min_oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            devices: crio_spec::devices::host_devices(Path::new("/dev")),
            lsm: host_lsm(config),
            ..Default::default()
        };
        let defaults = crio_spec::Defaults {
            capabilities: rt.default_capabilities.clone(),
            env: rt.default_env.clone(),
            ulimits: rt
                .default_ulimits
                .iter()
                .filter_map(|u| crio_config::parse_ulimit(u))
                .collect(),
            pids_limit: rt.pids_limit,
            seccomp_default: crio_spec::seccomp::Profile::configured(&rt.seccomp_profile)?,
            systemd_cgroups: rt.cgroup_manager == "systemd",
            image_volumes: config.image.image_volumes.clone(),
            apparmor_profile: rt.apparmor_profile.clone(),
        };
        Ok(Self {
            pending: Default::default(),
            locks: Default::default(),
            records_dir,
            run_dir,
            records: Records::new(records),
            host,
            defaults,
            log_size_max: rt.log_size_max,
        })
    }

    /// Writes a new record.
    fn save_new(&self, r: &ContainerRecord) -> Result<(), Status> {
        self.write_record(r)?;
        self.records.insert(&r.id, r.clone());
        Ok(())
    }

    /// Writes a changed record; NotFound when the container was removed
    /// meanwhile (it is not brought back).
    fn save(&self, r: &ContainerRecord) -> Result<(), Status> {
        match self
            .records
            .update(&r.id, r.clone(), || self.write_record(r))?
        {
            true => Ok(()),
            false => Err(crio_api::status::not_found("container", &r.id)),
        }
    }

    fn write_record(&self, r: &ContainerRecord) -> Result<(), Status> {
        let dir = self.records_dir.join(r.id.as_str());
        let data = serde_json::to_vec_pretty(r).map_err(internal)?;
        atomic::write(&dir.join("record.json"), &data).map_err(internal)
    }

    /// Every container but infra containers.
    pub fn list(&self) -> Vec<ContainerRecord> {
        let mut all = self.records.list();
        all.retain(|r| !r.infra);
        all
    }

    /// Brings containers up to date without asking the shims about running
    /// ones: a container whose init exited has an `exit` file in its bundle
    /// (the shim writes it first thing) or no process left (its shim died
    /// with it), and only those are refreshed. For ListContainers, which
    /// kubelet polls every second.
    pub async fn refresh_ended(&self, pods: &Pods, shims: &Shims) {
        let running = self
            .records
            .filter_map(|r| (r.state == ContainerState::Running).then(|| (r.id.clone(), r.pid)));
        for (id, pid) in running {
            let ended = self.bundle(&id).join(EXIT_FILE).exists()
                || (pid > 0 && !Path::new(&format!("/proc/{pid}")).exists());
            if ended {
                let _ = self.refresh(pods, shims, &id).await;
            }
        }
    }

    /// What `f` makes of each container (infra containers excepted) it
    /// keeps, without cloning the records.
    pub fn filter_map<U>(&self, mut f: impl FnMut(&ContainerRecord) -> Option<U>) -> Vec<U> {
        self.records
            .filter_map(|r| if r.infra { None } else { f(r) })
    }

    /// A record by ID or unique prefix.
    pub fn get(&self, id: &str) -> Option<ContainerRecord> {
        self.records.get(id)
    }

    fn lock_of(&self, id: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn bundle(&self, id: &Id) -> PathBuf {
        self.run_dir.join(id.as_str())
    }

    /// CreateContainer.
    pub async fn create(
        &self,
        pods: &Pods,
        images: &Images,
        shims: &Shims,
        pod_id: &str,
        config: ContainerConfig,
    ) -> Result<String, Status> {
        self.create_as(pods, images, shims, pod_id, config, false)
            .await
    }

    /// Creates and starts the infra container of a pod whose containers
    /// share its PID namespace (CRI-O's `drop_infra_ctr` behaviour): the
    /// pause image (pulled and pinned when absent) running `pause_command`
    /// (the image's own command when empty) as the namespace's PID 1.
    pub async fn run_infra(
        &self,
        pods: &Pods,
        images: &Images,
        shims: &Shims,
        pod: &PodRecord,
        image: &crio_config::ImageConfig,
    ) -> Result<(), Status> {
        let lock = self.lock_of(&format!("infra-{}", pod.id));
        let _held = lock.lock().await;
        if self.infra_of(&pod.id).is_some() {
            return Ok(());
        }
        let pause = match images.find(&image.pause_image) {
            Some(found) => found,
            None => images
                .pull(&image.pause_image, pause_credentials(image)?, true)
                .await
                .map_err(|e| {
                    Status::new(
                        e.code(),
                        format!("pause_image {:?}: {}", image.pause_image, e.message()),
                    )
                })?,
        };
        let id = self
            .create_as(
                pods,
                images,
                shims,
                &pod.id,
                infra_config(pod, pause.id.as_str(), &image.pause_command),
                true,
            )
            .await?;
        self.start(pods, shims, &id).await
    }

    /// The infra container of a pod, if it has one.
    pub fn infra_of(&self, pod_id: &str) -> Option<ContainerRecord> {
        self.records
            .filter_map(|r| (r.infra && r.pod_id == pod_id).then(|| r.clone()))
            .pop()
    }

    /// `/proc/<pid>/ns/pid` of a running container's init.
    async fn pidns_of(&self, pods: &Pods, shims: &Shims, r: &ContainerRecord) -> Option<PathBuf> {
        let client = self.client(pods, shims, r).await.ok()?;
        let req = task::StateRequest {
            id: r.id.to_string(),
            ..Default::default()
        };
        let state = client.state(ctx(), &req).await.ok()?;
        (state.status.enum_value_or_default() == task::Status::RUNNING && state.pid > 0)
            .then(|| PathBuf::from(format!("/proc/{}/ns/pid", state.pid)))
    }

    /// The PID namespace a container joins: its target container's for
    /// TARGET (kubectl debug --target), the pod's infra container's for POD
    /// (None when the pod has none); None for a namespace of its own (no
    /// shim call on that, the common, path).
    async fn pid_namespace(
        &self,
        pods: &Pods,
        shims: &Shims,
        pod: &PodRecord,
        config: &ContainerConfig,
    ) -> Result<Option<PathBuf>, Status> {
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
                        Status::not_found(format!(
                            "{field}: no container {:?} in pod {}",
                            n.target_id, pod.id
                        ))
                    })?;
                match self.pidns_of(pods, shims, &target).await {
                    Some(path) => Ok(Some(path)),
                    None => Err(Status::failed_precondition(format!(
                        "{field}: container {} is not running",
                        target.id
                    ))),
                }
            }
            // No namespace options mean a PID namespace of its own.
            Some(n) if n.pid == crio_api::cri::NamespaceMode::Pod as i32 => {
                match self.infra_of(&pod.id) {
                    Some(infra) => Ok(self.pidns_of(pods, shims, &infra).await),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    async fn create_as(
        &self,
        pods: &Pods,
        images: &Images,
        shims: &Shims,
        pod_id: &str,
        config: ContainerConfig,
        infra: bool,
    ) -> Result<String, Status> {
        let pod = pods
            .get(pod_id)
            .ok_or_else(|| crio_api::status::not_found("pod sandbox", pod_id))?;
        if pod.state != PodState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let md = config
            .metadata
            .clone()
            .ok_or_else(|| crio_api::status::invalid_field("config.metadata", "is required"))?;
        if md.name.is_empty() {
            return Err(crio_api::status::invalid_field(
                "config.metadata.name",
                "must not be empty",
            ));
        }
        check_log_path(&config.log_path)?;
        let pmd = pod.metadata();
        let name = format!(
            "k8s_{}_{}_{}_{}_{}",
            md.name, pmd.name, pmd.namespace, pmd.uid, md.attempt
        );
        let wanted = crate::records::canonical(&config);
        let in_flight = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let holder = self.records.filter_map(|r| {
                (r.name == name).then(|| {
                    let same = crate::records::canonical(&r.config) == wanted;
                    (r.id.clone(), same)
                })
            });
            if let Some((id, same)) = holder.into_iter().next() {
                // The same request again (a retry whose answer was lost) gets
                // the same container; another one is refused.
                if same {
                    return Ok(id.to_string());
                }
                return Err(Status::already_exists(format!(
                    "container name {name:?} is reserved by {id}"
                )));
            }
            match pending.get(&name) {
                Some((config, done)) if *config == wanted => Err(done.clone()),
                Some(_) => {
                    return Err(Status::already_exists(format!(
                        "container name {name:?} is reserved by a CreateContainer in progress"
                    )));
                }
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    pending.insert(name.clone(), (wanted, rx));
                    Ok(tx)
                }
            }
        };
        let tx = match in_flight {
            Ok(tx) => tx,
            // A retry of a create still under way (kubelet gave up
            // waiting): the same container when it is done.
            Err(mut done) => {
                let outcome = done
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| Status::aborted("the first CreateContainer was cancelled"))?
                    .clone();
                return match outcome {
                    Some(Ok(id)) => Ok(id),
                    Some(Err((code, msg))) => Err(Status::new(code, msg)),
                    None => Err(Status::aborted("container creation stopped")),
                };
            }
        };
        let _reserved = Reserved(&self.pending, name.clone());
        let result = self
            .create_reserved(pods, images, shims, &pod, &name, &config, infra)
            .await;
        let _ = tx.send(Some(match &result {
            Ok(id) => Ok(id.clone()),
            Err(e) => Err((e.code(), e.message().to_string())),
        }));
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_reserved(
        &self,
        pods: &Pods,
        images: &Images,
        shims: &Shims,
        pod: &PodRecord,
        name: &str,
        config: &ContainerConfig,
        infra: bool,
    ) -> Result<String, Status> {
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = images.find(&image_name).ok_or_else(|| {
            Status::not_found(format!(
                "config.image: image {image_name:?} is not present; pull it first"
            ))
        })?;
        let id = Id::random();
        let result = self
            .build(
                &id,
                name,
                pod,
                pods,
                images,
                shims,
                config,
                &image,
                &image_name,
                infra,
            )
            .await;
        if let Err(e) = &result {
            tracing::warn!(container = %id, "CreateContainer failed, cleaning up: {}", e.message());
            self.cleanup(&id);
        }
        result.map(|()| id.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    async fn build(
        &self,
        id: &Id,
        name: &str,
        pod: &PodRecord,
        pods: &Pods,
        images: &Images,
        shims: &Shims,
        config: &ContainerConfig,
        image: &crio_storage::ImageRecord,
        image_name: &str,
        infra: bool,
    ) -> Result<(), Status> {
        let mut steps = crate::steps::Steps::default();
        let store = self.records_dir.join(id.as_str());
        let bundle = self.bundle(id);
        let rootfs = bundle.join("rootfs");
        let lowers = images
            .layer_paths(image)
            .map_err(|e| Status::failed_precondition(format!("image {}: {e}", image.id)))?;
        check_propagation(config)?;
        let job = RootfsJob {
            lowers,
            store: store.clone(),
            rootfs: rootfs.clone(),
            image_volumes: self.defaults.image_volumes.clone(),
            image: image.clone(),
            config: config.clone(),
        };
        let usage = images.usage().clone();
        let measured = id.to_string();
        let prepared = tokio::task::spawn_blocking(move || {
            let prepared = job.run()?;
            // Its writable layer has figures from the start.
            usage.measure_container(&measured);
            Ok::<_, Status>(prepared)
        })
        .await
        .map_err(internal)??;
        steps.mark("rootfs");

        let pod_dir = pods.run_dir(&pod.id);
        let ns_dir = &pods.namespaces_dir();
        let pin = |kind: crio_network::netns::Kind| {
            pod.kinds()
                .contains(&kind)
                .then(|| crio_network::netns::pin_path(ns_dir, kind, &pod.id))
        };
        // The record keeps the request as made: a retry is compared with it.
        let request = config;
        let config = &prepared.config;
        let mut host = self.host.clone();
        host.passwd = prepared.passwd;
        host.group = prepared.group;
        let cgroup_parent = pod.cgroup_parent();
        let mut spec = crio_spec::build(&crio_spec::Input {
            id,
            config,
            image: &image.config,
            rootfs: &rootfs,
            pod: crio_spec::Pod {
                config: &pod.config,
                files_dir: pod_dir.clone(),
                shm: pod.shm.clone(),
                netns: pin(crio_network::netns::Kind::Net),
                ipcns: pin(crio_network::netns::Kind::Ipc),
                utsns: pin(crio_network::netns::Kind::Uts),
                pidns: self.pid_namespace(pods, shims, pod, config).await?,
                cgroup_parent: cgroup_parent.clone(),
            },
            defaults: &self.defaults,
            host: &host,
        })
        .map_err(|e| match e {
            crio_spec::SpecError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            crio_spec::SpecError::Missing { .. } => Status::not_found(e.to_string()),
        })?;
        check_lsm(id, config, &spec, self.host.lsm)?;
        let log_path = if config.log_path.is_empty() || pod.config.log_directory.is_empty() {
            String::new()
        } else {
            Path::new(&pod.config.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        spec.annotations
            .insert(annotations::LOG_PATH.into(), log_path.clone());
        if !log_path.is_empty() {
            // The shim resolves the log path below it, following no symlink.
            spec.annotations.insert(
                annotations::LOG_DIRECTORY.into(),
                pod.config.log_directory.clone(),
            );
        }
        if self.log_size_max > 0 {
            spec.annotations.insert(
                annotations::LOG_SIZE_MAX.into(),
                self.log_size_max.to_string(),
            );
        }
        for (key, on) in [
            (annotations::STDIN, config.stdin),
            (annotations::STDIN_ONCE, config.stdin_once),
            (annotations::TTY, config.tty),
        ] {
            spec.annotations.insert(key.into(), on.to_string());
        }
        let stop_signal = crio_spec::stop_signal(&image.config)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let json = serde_json::to_vec_pretty(&spec).map_err(internal)?;
        std::fs::write(bundle.join("config.json"), json).map_err(internal)?;

        let record = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            name: name.to_string(),
            config: request.clone(),
            image_id: image.id.to_string(),
            image_ref: image_name.to_string(),
            created_at: crio_api::time::now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            state: ContainerState::Created,
            oom_killed: false,
            message: String::new(),
            log_path,
            stop_signal,
            infra,
            user: Some(spec.process.user.clone()),
            pid: 0,
        };
        steps.mark("spec");
        let client = shims
            .ensure(&pod.id, &pod_dir, &cgroup_parent)
            .await
            .map_err(Status::unavailable)?;
        steps.mark("shim");
        let req = task::CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.display().to_string(),
            terminal: config.tty,
            ..Default::default()
        };
        client
            .create(ctx(), &req)
            .await
            .map_err(|e| task_error("create task", e))?;
        steps.mark("task");
        self.save_new(&record)?;
        steps.mark("record");
        tracing::debug!(container = %id, steps = %steps.summary(), "container created");
        Ok(())
    }

    /// Removes what a failed create left.
    fn cleanup(&self, id: &Id) {
        // Forgotten first: a concurrent refresh then cannot write it back.
        self.records.remove(id);
        let bundle = self.bundle(id);
        let _ = unmount(&bundle.join("rootfs"));
        let _ = std::fs::remove_dir_all(&bundle);
        let _ = std::fs::remove_dir_all(self.records_dir.join(id.as_str()));
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id.as_str());
    }

    async fn client(
        &self,
        pods: &Pods,
        shims: &Shims,
        r: &ContainerRecord,
    ) -> Result<task::TaskClient, Status> {
        shims
            .task(&r.pod_id, &pods.run_dir(&r.pod_id))
            .await
            .map_err(Status::unavailable)
    }

    /// StartContainer.
    pub async fn start(&self, pods: &Pods, shims: &Shims, id: &str) -> Result<(), Status> {
        let lock = self.lock_of(id);
        let _held = lock.lock().await;
        let mut r = self
            .get(id)
            .ok_or_else(|| crio_api::status::not_found("container", id))?;
        if r.state != ContainerState::Created {
            return Err(Status::failed_precondition(format!(
                "container {id} is not in the created state"
            )));
        }
        let client = self.client(pods, shims, &r).await?;
        let req = task::StartRequest {
            id: r.id.to_string(),
            ..Default::default()
        };
        // Taken before the call: a quick container may exit before it returns.
        let started_at = crio_api::time::now_nanos();
        let started = client
            .start(ctx(), &req)
            .await
            .map_err(|e| task_error("start task", e))?;
        r.pid = started.pid;
        r.state = ContainerState::Running;
        r.started_at = started_at;
        self.save(&r)
    }

    /// Brings the record up to date with the shim (exit code and time).
    pub async fn refresh(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
    ) -> Result<ContainerRecord, Status> {
        let mut r = self
            .get(id)
            .ok_or_else(|| crio_api::status::not_found("container", id))?;
        if r.state == ContainerState::Exited {
            return Ok(r);
        }
        let req = task::StateRequest {
            id: r.id.to_string(),
            ..Default::default()
        };
        let mut state = self.task_state(pods, shims, &r, &req).await;
        if matches!(&state, Err(e) if e.code() == crio_api::Code::Unavailable) {
            // A fresh connection before concluding the shim is gone.
            shims.forget(&r.pod_id);
            state = self.task_state(pods, shims, &r, &req).await;
        }
        let state = match state {
            Ok(state) => state,
            Err(e) if e.code() == crio_api::Code::Unavailable => return self.shim_lost(r),
            Err(e) => return Err(e),
        };
        if state.status.enum_value_or_default() == task::Status::STOPPED {
            r.state = ContainerState::Exited;
            r.exit_code = state.exit_status as i32;
            r.finished_at = state
                .exited_at
                .as_ref()
                .map(crio_api::time::timestamp_to_nanos)
                .unwrap_or(0);
            // The shim marks OOM kills in the bundle.
            r.oom_killed = self.bundle(&r.id).join(OOM_FILE).exists();
            self.save(&r)?;
        }
        Ok(r)
    }

    async fn task_state(
        &self,
        pods: &Pods,
        shims: &Shims,
        r: &ContainerRecord,
        req: &task::StateRequest,
    ) -> Result<task::StateResponse, Status> {
        let client = self.client(pods, shims, r).await?;
        client
            .state(ctx(), req)
            .await
            .map_err(|e| task_error("task state", e))
    }

    /// The pod's shim is gone: the container is reported exited with what its
    /// bundle recorded (the shim writes the exit before anything else), or as
    /// lost when nothing was recorded.
    fn shim_lost(&self, mut r: ContainerRecord) -> Result<ContainerRecord, Status> {
        let bundle = self.bundle(&r.id);
        let recorded = std::fs::read_to_string(bundle.join(EXIT_FILE))
            .ok()
            .and_then(|t| parse_exit_record(&t));
        r.state = ContainerState::Exited;
        r.oom_killed = bundle.join(OOM_FILE).exists();
        match recorded {
            Some((code, at)) => {
                r.exit_code = code;
                r.finished_at = at;
            }
            None => {
                r.exit_code = 255;
                r.finished_at = crio_api::time::now_nanos();
                r.message = "the pod's shim is gone: the container's exit was not recorded".into();
            }
        }
        tracing::warn!(container = %r.id, "shim unreachable: container reported exited");
        self.save(&r)?;
        Ok(r)
    }

    /// StopContainer: the image's stop signal (SIGTERM by default), SIGKILL
    /// after `timeout` seconds; idempotent.
    pub async fn stop(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
        timeout: i64,
    ) -> Result<(), Status> {
        let lock = self.lock_of(id);
        let _held = lock.lock().await;
        self.stop_locked(pods, shims, id, timeout).await
    }

    async fn stop_locked(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
        timeout: i64,
    ) -> Result<(), Status> {
        if self.get(id).is_none() {
            return Ok(());
        }
        // Up to date first: it may have exited, or its shim may be gone.
        let r = self.refresh(pods, shims, id).await?;
        if r.state != ContainerState::Running {
            return Ok(());
        }
        let client = self.client(pods, shims, &r).await?;
        let kill = |signal: u32| task::KillRequest {
            id: r.id.to_string(),
            signal,
            all: true,
            ..Default::default()
        };
        let wait = task::WaitRequest {
            id: r.id.to_string(),
            ..Default::default()
        };
        let signal = if r.stop_signal == 0 {
            15
        } else {
            r.stop_signal
        };
        client
            .kill(ctx(), &kill(signal))
            .await
            .map_err(|e| task_error("kill task", e))?;
        let grace = Duration::from_secs(timeout.max(0) as u64);
        if tokio::time::timeout(grace, client.wait(ttrpc::context::with_timeout(0), &wait))
            .await
            .is_err()
        {
            client
                .kill(ctx(), &kill(9))
                .await
                .map_err(|e| task_error("kill task", e))?;
            client
                .wait(ctx(), &wait)
                .await
                .map_err(|e| task_error("wait task", e))?;
        }
        self.refresh(pods, shims, id).await.map(drop)
    }

    /// RemoveContainer: stops it if needed, deletes the task, unmounts and
    /// removes everything; an unknown container is not an error.
    pub async fn remove(&self, pods: &Pods, shims: &Shims, id: &str) -> Result<(), Status> {
        let lock = self.lock_of(id);
        let _held = lock.lock().await;
        let Some(r) = self.get(id) else { return Ok(()) };
        self.stop_locked(pods, shims, &r.id, 0).await?;
        let shim_alive = self.client(pods, shims, &r).await.is_ok() && r.message.is_empty();
        if !shim_alive {
            // The shim's `delete` action force-deletes what it left.
            shims.delete_action(&r.id, &self.bundle(&r.id)).await;
        } else if let Ok(client) = self.client(pods, shims, &r).await {
            let req = task::DeleteRequest {
                id: r.id.to_string(),
                ..Default::default()
            };
            match client.delete(ctx(), &req).await {
                Ok(_) => {}
                Err(ttrpc::Error::RpcStatus(s)) if s.code() == ttrpc::Code::NOT_FOUND => {}
                Err(e) => return Err(task_error("delete task", e)),
            }
        }
        self.cleanup(&r.id);
        Ok(())
    }

    /// ExecSync: runs `cmd` in the running container through its shim,
    /// captures stdout and stderr (each capped at
    /// [`EXEC_SYNC_OUTPUT_MAX`](crio_contract::EXEC_SYNC_OUTPUT_MAX),
    /// like the kubelet's and CRI-O's limit) and waits at most `timeout`
    /// seconds (0: no limit). Output past the cap is dropped by the shim;
    /// as in CRI-O, the response cannot say so, the daemon's log does.
    pub async fn exec_sync(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<(Vec<u8>, Vec<u8>, i32), Status> {
        // The files go in the bundle of the container the ID (or prefix) names.
        let record = self
            .get(id)
            .ok_or_else(|| crio_api::status::not_found("container", id))?;
        let id = &record.id;
        let bundle = self.bundle(id);
        let exec_id: String = crate::pods::new_id().chars().take(16).collect();
        let (out, err) = (
            bundle.join(format!("exec-{exec_id}.out")),
            bundle.join(format!("exec-{exec_id}.err")),
        );
        let files = (out.display().to_string(), err.display().to_string());
        let exec = self
            .exec_create_as(pods, shims, id, &exec_id, cmd.clone(), false, "", files)
            .await?;
        let client = exec.client.clone();
        let r = exec.container.clone();
        let result = async {
            let start = task::StartRequest {
                id: r.id.to_string(),
                exec_id: exec_id.clone(),
                ..Default::default()
            };
            client
                .start(ctx(), &start)
                .await
                .map_err(|e| task_error("start exec", e))?;
            let wait = task::WaitRequest {
                id: r.id.to_string(),
                exec_id: exec_id.clone(),
                ..Default::default()
            };
            let waited = client.wait(ttrpc::context::with_timeout(0), &wait);
            let exit = if timeout > 0 {
                match tokio::time::timeout(Duration::from_secs(timeout as u64), waited).await {
                    Ok(done) => done,
                    Err(_) => {
                        let kill = task::KillRequest {
                            id: r.id.to_string(),
                            exec_id: exec_id.clone(),
                            signal: 9,
                            ..Default::default()
                        };
                        let _ = client.kill(ctx(), &kill).await;
                        let _ = client.wait(ctx(), &wait).await;
                        return Err(Status::deadline_exceeded(format!(
                            "command {cmd:?} timed out after {timeout}s"
                        )));
                    }
                }
            } else {
                waited.await
            }
            .map_err(|e| task_error("wait exec", e))?;
            let (out, err) = (out.clone(), err.clone());
            let (stdout, stderr) = tokio::task::spawn_blocking(move || {
                (read_exec_output(&out), read_exec_output(&err))
            })
            .await
            .map_err(internal)?;
            for (stream, data) in [("stdout", &stdout), ("stderr", &stderr)] {
                if data.len() as u64 >= EXEC_SYNC_OUTPUT_MAX {
                    tracing::warn!(
                        "ExecSync output of container {id} ({cmd:?}): {stream} reached the \
                         {EXEC_SYNC_OUTPUT_MAX}-byte cap; anything after it was discarded"
                    );
                }
            }
            Ok((stdout, stderr, exit.exit_status as i32))
        }
        .await;
        exec.delete().await;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_file(&err);
        })
        .await;
        result
    }

    /// Creates (not starts) an exec process in running container `id`:
    /// `cmd` in the container's process settings, with a terminal or not;
    /// `stdin` as the shim takes it ("attach": from its attach socket);
    /// stdout and stderr into `files` (empty: only to attach clients).
    #[allow(clippy::too_many_arguments)]
    pub async fn exec_create(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: &str,
        files: (String, String),
    ) -> Result<Exec, Status> {
        let exec_id: String = crate::pods::new_id().chars().take(16).collect();
        self.exec_create_as(pods, shims, id, &exec_id, cmd, tty, stdin, files)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn exec_create_as(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
        exec_id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: &str,
        files: (String, String),
    ) -> Result<Exec, Status> {
        if cmd.is_empty() {
            return Err(crio_api::status::invalid_field("cmd", "must not be empty"));
        }
        let r = self.running(pods, shims, id).await?;
        let bundle = self.bundle(&r.id);
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).map_err(internal)?)
                .map_err(internal)?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(tty);
        let client = self.client(pods, shims, &r).await?;
        let any = task::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).map_err(internal)?,
            ..Default::default()
        };
        let req = task::ExecProcessRequest {
            id: r.id.to_string(),
            exec_id: exec_id.to_string(),
            terminal: tty,
            stdin: stdin.to_string(),
            stdout: files.0,
            stderr: files.1,
            spec: task::protobuf::MessageField::some(any),
            ..Default::default()
        };
        client
            .exec(ctx(), &req)
            .await
            .map_err(|e| task_error("exec", e))?;
        Ok(Exec {
            client,
            container: r,
            id: exec_id.to_string(),
        })
    }

    /// A running container, or FailedPrecondition naming its state.
    async fn running(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
    ) -> Result<ContainerRecord, Status> {
        let r = self.refresh(pods, shims, id).await?;
        if r.state != ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(r)
    }

    /// UpdateContainerResources: applies the new limits through the shim
    /// (the runtime's `update`) and keeps them in the record.
    pub async fn update_resources(
        &self,
        pods: &Pods,
        shims: &Shims,
        id: &str,
        resources: crio_api::cri::LinuxContainerResources,
    ) -> Result<(), Status> {
        let mut r = self.refresh(pods, shims, id).await?;
        if r.state == ContainerState::Exited {
            return Err(Status::failed_precondition(format!(
                "container {id} has exited"
            )));
        }
        let oci = crio_spec::resources_of(&resources);
        let any = task::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: serde_json::to_vec(&oci).map_err(internal)?,
            ..Default::default()
        };
        let req = task::UpdateTaskRequest {
            id: r.id.to_string(),
            resources: task::protobuf::MessageField::some(any),
            ..Default::default()
        };
        self.client(pods, shims, &r)
            .await?
            .update(ctx(), &req)
            .await
            .map_err(|e| task_error("update resources", e))?;
        r.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(resources);
        self.save(&r)
    }

    /// ReopenContainerLog: the shim opens the log file at its path again.
    pub async fn reopen_log(&self, pods: &Pods, shims: &Shims, id: &str) -> Result<(), Status> {
        let r = self.running(pods, shims, id).await?;
        let socket = crio_attach::attach_path(shims.socket_dir(), &r.id, "");
        crio_attach::reopen_log(&socket)
            .await
            .map_err(|e| Status::unknown(format!("reopen the log of container {id}: {e}")))
    }

    /// The cgroup statistics of a running container, from its shim.
    pub async fn metrics(
        &self,
        pods: &Pods,
        shims: &Shims,
        r: &ContainerRecord,
    ) -> Result<task::cgroups::metrics::Metrics, Status> {
        use task::protobuf::Message;
        let req = task::StatsRequest {
            id: r.id.to_string(),
            ..Default::default()
        };
        let resp = self
            .client(pods, shims, r)
            .await?
            .stats(ctx(), &req)
            .await
            .map_err(|e| task_error("container stats", e))?;
        task::cgroups::metrics::Metrics::parse_from_bytes(&resp.stats.value)
            .map_err(|e| internal(format!("decode the shim's stats: {e}")))
    }

    /// What verbose ContainerStatus adds: the init's pid (0 once exited or
    /// unknown) and the OCI spec the container runs with.
    pub async fn verbose_info(
        &self,
        pods: &Pods,
        shims: &Shims,
        r: &ContainerRecord,
    ) -> (u32, serde_json::Value) {
        let req = task::StateRequest {
            id: r.id.to_string(),
            ..Default::default()
        };
        let pid = match r.state {
            ContainerState::Exited => 0,
            _ => self
                .task_state(pods, shims, r, &req)
                .await
                .map(|s| s.pid)
                .unwrap_or(0),
        };
        let spec = std::fs::read(self.bundle(&r.id).join("config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or(serde_json::Value::Null);
        (pid, spec)
    }

    /// The writable layer (the overlay's upper dir) of a container.
    pub fn upper_dir(&self, id: &Id) -> PathBuf {
        self.records_dir.join(id.as_str()).join("upper")
    }

    /// The containers of a pod, its infra container excepted.
    pub fn of_pod(&self, pod_id: &str) -> Vec<ContainerRecord> {
        self.list()
            .into_iter()
            .filter(|r| r.pod_id == pod_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_below_the_log_directory() {
        for good in ["", "c.log", "c/0.log", "./c/0.log", "c/./0.log"] {
            assert!(check_log_path(good).is_ok(), "{good}");
        }
        for bad in [
            "/etc/passwd",
            "../x",
            "c/../../x",
            "c/..",
            "..",
            ".",
            "c/",
            "/",
        ] {
            let e = check_log_path(bad).unwrap_err();
            assert_eq!(e.code(), crio_api::Code::InvalidArgument, "{bad}");
            assert!(e.message().starts_with("config.log_path: "), "{bad}: {e:?}");
        }
    }
}
