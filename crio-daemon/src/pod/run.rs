//! RunPodSandbox: the name reserved (a retry gets the same pod), then, in
//! a task of its own, the pod's directory, namespaces (hostname and
//! sysctls set inside), network and files made while its shim starts. A
//! failed step rolls back everything; a crash mid-way is rolled back at
//! the next start from the pending record.

use std::path::Path;
use std::sync::Arc;

use crio_api::cri::{NamespaceMode, PodSandboxConfig};
use crio_network::netns::{self, Kind, PinRequest};
use tokio::sync::watch;
use tracing::Instrument;

use super::store::Reservation;
use super::{PodRecord, PodState, Pods, files, namespace_options, pod_name};
use crate::error::{Error, Result};
use crate::ids::Id;

impl Pods {
    /// RunPodSandbox: reserves the name, then builds the pod in a task of its
    /// own. A retry with the same name and configuration gets the same pod.
    pub async fn run(
        self: &Arc<Self>,
        config: PodSandboxConfig,
        handler: String,
    ) -> Result<String> {
        let md = config
            .metadata
            .clone()
            .ok_or_else(|| Error::field("config.metadata", "is required"))?;
        for (field, value) in [
            ("name", &md.name),
            ("namespace", &md.namespace),
            ("uid", &md.uid),
        ] {
            if value.is_empty() {
                return Err(Error::field(
                    &format!("config.metadata.{field}"),
                    "must not be empty",
                ));
            }
        }
        self.handlers.resolve(&handler)?;
        crate::userns::pod_map(&config)?;
        let mut done = self.reserve(pod_name(&md), config, handler)?;
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Aborted("pod creation stopped".into()))?
            .clone();
        outcome.unwrap_or_else(|| Err(Error::Aborted("pod creation stopped".into())))
    }

    /// The outcome to come of the RunPodSandbox of `config`: a new pod's,
    /// made in a task of its own, or that of the same request before.
    fn reserve(
        self: &Arc<Self>,
        name: String,
        config: PodSandboxConfig,
        handler: String,
    ) -> Result<watch::Receiver<super::store::RunOutcome>> {
        let wanted = crate::records::canonical(&config);
        let mut reservations = self.reservations.lock();
        match reservations.get(&name) {
            Some(r) if r.config == wanted => {
                if r.done.borrow().is_none() {
                    r.stage.stalled();
                }
                Ok(r.done.clone())
            }
            Some(r) => Err(Error::AlreadyExists(format!(
                "pod sandbox name {name:?} is reserved by {}",
                r.id
            ))),
            None => {
                let id = Id::random();
                let (tx, rx) = watch::channel(None);
                let stage = crate::steps::Stage::new("sandbox creating");
                reservations.insert(
                    name.clone(),
                    Reservation {
                        id: id.clone(),
                        config: wanted,
                        done: rx.clone(),
                        stage: stage.clone(),
                    },
                );
                let pods = self.clone();
                tokio::spawn(
                    async move {
                        let outcome = pods.create(&id, &name, config, handler, &stage).await;
                        if outcome.is_err() {
                            pods.reservations.lock().remove(&name);
                        }
                        let _ = tx.send(Some(outcome.map(|()| id.to_string())));
                    }
                    .in_current_span(),
                );
                Ok(rx)
            }
        }
    }

    async fn create(
        &self,
        id: &Id,
        name: &str,
        config: PodSandboxConfig,
        handler: String,
        stage: &crate::steps::Stage,
    ) -> Result<()> {
        let lock = self.locks.of(id);
        let _held = lock.lock().await;
        let started = std::time::Instant::now();
        let mut record = PodRecord {
            id: id.clone(),
            name: name.to_string(),
            runtime_handler: handler,
            created_at: crio_api::time::now_nanos(),
            state: PodState::Ready,
            namespaces: Vec::new(),
            network: None,
            ips: Vec::new(),
            shm: None,
            config,
        };
        // What the pod gets of its own is recorded before any of it is
        // made: a crash at any step is rolled back from this one record
        // (unpinning or unmounting what was not made yet is fine; a network
        // without a cached result gets a DEL without one).
        let ns = namespace_options(&record.config);
        let mut kinds = Vec::new();
        if ns.network != NamespaceMode::Node as i32 {
            kinds.extend([Kind::Net, Kind::Uts]);
        }
        if ns.ipc != NamespaceMode::Node as i32 {
            kinds.push(Kind::Ipc);
            record.shm = Some(self.run_dir(id).join("shm"));
        }
        if crate::userns::pod_map(&record.config)?.is_some() {
            kinds.push(Kind::User);
        }
        record.namespaces = kinds.iter().map(|k| k.name().to_string()).collect();
        let step = crate::telemetry::step;
        step("pending record").in_scope(|| self.save_pending(&record))?;
        match self.build(&mut record, stage).await {
            Ok(()) => {
                step("record").in_scope(|| self.save(&record))?;
                let _ = std::fs::remove_file(self.pending_file(id));
                tracing::info!(pod = %id, name, ips = ?record.ips, elapsed_ms = started.elapsed().as_millis() as u64, "pod ready");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(pod = %id, name, "RunPodSandbox failed, rolling back: {e}");
                self.roll_back(&record).await;
                Err(e)
            }
        }
    }

    /// Undoes what `record` says a RunPodSandbox made: network, /dev/shm,
    /// namespaces, the shim (before the directory, which holds its
    /// address), the directory and the pending record.
    pub(super) async fn roll_back(&self, record: &PodRecord) {
        self.teardown(record).await;
        self.shims
            .shutdown(
                &record.id,
                &self.run_dir(&record.id),
                &record.cgroup_parent(),
            )
            .await;
        let _ = std::fs::remove_dir_all(self.run_dir(&record.id));
        let _ = std::fs::remove_file(self.pending_file(&record.id));
    }

    /// The steps of RunPodSandbox; `record` says what exists so far, for
    /// the rollback.
    async fn build(&self, record: &mut PodRecord, stage: &crate::steps::Stage) -> Result<()> {
        let dir = self.run_dir(&record.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("create {}: {e}", dir.display())))?;
        let (id, cgroup) = (record.id.clone(), record.cgroup_parent());
        let handler = record.runtime_handler.clone();
        // The shim starts while the namespaces and network are made: the
        // pod's first CreateContainer finds it ready.
        let shim = async {
            let started = std::time::Instant::now();
            if self.shims.check().is_ok() {
                self.shims
                    .ensure(&id, &dir, &cgroup, &handler)
                    .await
                    .map_err(Error::PodShim)?;
            }
            Ok::<_, Error>(started.elapsed())
        }
        .instrument(crate::telemetry::step("pod shim"));
        let rest = async {
            let built = self.build_in(record, &dir, stage).await;
            stage.set("sandbox container runtime creation");
            built
        };
        let (shim, rest) = tokio::join!(shim, rest);
        let shim_ms = shim?.as_secs_f64() * 1e3;
        tracing::debug!(pod = %id, shim_ms, "pod shim started");
        rest
    }

    /// The steps of RunPodSandbox but the shim, in the pod's directory.
    async fn build_in(
        &self,
        record: &mut PodRecord,
        dir: &Path,
        stage: &crate::steps::Stage,
    ) -> Result<()> {
        let mut steps = crate::steps::Steps::default();
        let kinds = record.kinds();
        let host_net = !kinds.contains(&Kind::Net);
        let hostname = if !record.config.hostname.is_empty() {
            record.config.hostname.clone()
        } else if host_net {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            record.metadata().name.chars().take(63).collect()
        };
        let sysctls = self.sysctls(record, &kinds)?;
        stage.set("sandbox namespace creation");
        if !kinds.is_empty() {
            crate::namespaces::pin(PinRequest {
                kinds: kinds.clone(),
                namespaces_dir: self.config.runtime.namespaces_dir.clone(),
                id: record.id.to_string(),
                hostname: (!host_net).then(|| hostname.clone()),
                sysctls,
                user: crate::userns::pod_map(&record.config)?,
            })
            .instrument(crate::telemetry::step("namespaces"))
            .await
            .map_err(|e| Error::Internal(format!("pod {}: {e}", record.id)))?;
        }
        steps.mark("namespaces");
        stage.set("sandbox network creation");
        if !host_net {
            self.add_network(record)
                .instrument(crate::telemetry::step("network"))
                .await?;
        }
        steps.mark("network");
        stage.set("sandbox shm creation");
        let files = crate::telemetry::step("files").entered();
        write_files(record, dir, &hostname, host_net)?;
        if let Some(shm) = &record.shm {
            mount_shm(shm, &record.id)?;
        }
        drop(files);
        if kinds.contains(&Kind::User) {
            let pinned =
                netns::pin_path(&self.config.runtime.namespaces_dir, Kind::User, &record.id);
            let (dir, shm) = (dir.to_path_buf(), record.shm.clone());
            tokio::task::spawn_blocking(move || {
                crate::userns::idmap_pod_files(&dir, shm.as_deref(), &pinned)
            })
            .await
            .map_err(Error::internal)??;
        }
        steps.mark("files");
        tracing::debug!(pod = %record.id, steps = %steps.summary(), "pod built");
        Ok(())
    }

    /// The sysctls set in the pod's namespaces: the configured defaults,
    /// then the requested ones, each of which must be namespaced there.
    fn sysctls(&self, record: &PodRecord, kinds: &[Kind]) -> Result<Vec<(String, String)>> {
        let mut sysctls = Vec::new();
        for entry in &self.config.runtime.default_sysctls {
            if let Some((k, v)) = entry.split_once('=') {
                sysctls.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if let Some(linux) = &record.config.linux {
            let mut requested: Vec<_> = linux.sysctls.iter().collect();
            requested.sort();
            for (k, v) in requested {
                if !netns::namespaced_sysctl(k, kinds) {
                    return Err(Error::field(
                        "config.linux.sysctls",
                        format!("{k:?} is not namespaced in this pod and cannot be set"),
                    ));
                }
                sysctls.push((k.clone(), v.clone()));
            }
        }
        Ok(sysctls)
    }
}

/// The pod's hostname, resolv.conf and hosts, readable by the containers'
/// users whatever the daemon's umask.
fn write_files(record: &PodRecord, dir: &Path, hostname: &str, host_net: bool) -> Result<()> {
    let host_etc = |f: &str| std::fs::read_to_string(Path::new("/etc").join(f)).unwrap_or_default();
    let write = |file: &str, content: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(file);
        std::fs::write(&path, content)
            .and_then(|()| {
                let readable = std::fs::Permissions::from_mode(0o644);
                std::fs::File::open(&path)?.set_permissions(readable)
            })
            .map_err(|e| Error::Internal(format!("write {file}: {e}")))
    };
    write("hostname", &format!("{hostname}\n"))?;
    write(
        "resolv.conf",
        &files::resolv_conf(record.config.dns_config.as_ref(), &host_etc("resolv.conf")),
    )?;
    if host_net {
        write("hosts", &host_etc("hosts"))
    } else {
        write("hosts", &files::hosts(hostname, &record.ips))
    }
}

/// Mounts the pod's own /dev/shm (a 64 MiB tmpfs).
fn mount_shm(shm: &Path, id: &Id) -> Result<()> {
    std::fs::create_dir_all(shm).map_err(Error::internal)?;
    nix::mount::mount(
        Some("shm"),
        shm,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some("mode=1777,size=67108864"),
    )
    .map_err(|e| Error::Internal(format!("mount /dev/shm of pod {id}: {e}")))
}
