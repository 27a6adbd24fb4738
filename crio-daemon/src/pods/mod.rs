//! Pod sandboxes: their records, name reservations, namespaces, network and
//! files. Each RunPodSandbox runs in a task of its own, so a kubelet that
//! gives up waiting never leaves a half-made pod: the task finishes or rolls
//! back, and a retry with the same name gets the same pod.

mod files;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use crio_api::cri::{NamespaceMode, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol};
use crio_api::{Code, Status};
use crio_config::Config;
use crio_network::cni::{self, Attachment};
use crio_network::netns::{self, Kind, PinRequest};
use crio_storage::atomic;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::ids::Id;
use crate::records::Records;

/// A pod's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    /// Namespaces and network up.
    Ready,
    /// Stopped: network torn down, containers stopped.
    NotReady,
}

/// What is kept about a pod, on disk under `root/pods/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    /// The sandbox ID.
    pub id: Id,
    /// The reserved name.
    pub name: String,
    /// The kubelet's configuration, as given.
    pub config: PodSandboxConfig,
    /// The runtime handler.
    pub runtime_handler: String,
    /// Creation time, CRI nanoseconds.
    pub created_at: i64,
    /// Lifecycle state.
    pub state: PodState,
    /// Namespaces the pod owns (pinned under namespaces_dir).
    pub namespaces: Vec<String>,
    /// The CNI network it joined, and the ADD result (for DEL after a restart).
    pub network: Option<(String, Value)>,
    /// Its IPs, IPv4 first.
    pub ips: Vec<String>,
    /// The pod's /dev/shm, when it has its own.
    pub shm: Option<PathBuf>,
}

impl PodRecord {
    /// The kinds of namespace the pod owns.
    pub fn kinds(&self) -> Vec<Kind> {
        self.namespaces
            .iter()
            .filter_map(|k| Kind::parse(k))
            .collect()
    }

    /// The pod's metadata.
    pub fn metadata(&self) -> PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// Whether its containers share one PID namespace (held by an infra
    /// container): the pod's PID mode is POD.
    pub fn shares_pid(&self) -> bool {
        self.namespace_options().pid == NamespaceMode::Pod as i32
    }

    /// The kubelet's cgroup parent of the pod ("" when none).
    pub fn cgroup_parent(&self) -> String {
        self.config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default()
    }

    /// Namespace options as requested.
    pub fn namespace_options(&self) -> crio_api::cri::NamespaceOption {
        namespace_options(&self.config)
    }
}

fn namespace_options(config: &PodSandboxConfig) -> crio_api::cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Outcome of a RunPodSandbox, shared with retries.
type RunOutcome = Option<Result<String, (Code, String)>>;

struct Reservation {
    id: Id,
    config: String,
    done: watch::Receiver<RunOutcome>,
}

/// The pods of this daemon.
pub struct Pods {
    config: Config,
    records_dir: PathBuf,
    /// Pods being made: what RunPodSandbox has done so far, so a crash
    /// mid-way is rolled back at the next start.
    pending_dir: PathBuf,
    run_dir: PathBuf,
    records: Records<PodRecord>,
    reservations: Mutex<HashMap<String, Reservation>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pod_cidrs: Mutex<Vec<String>>,
    /// The pod shims: a pod's is started while its network is made.
    shims: std::sync::OnceLock<Arc<crate::shim::Shims>>,
}

fn internal(what: impl std::fmt::Display) -> (Code, String) {
    (Code::Internal, what.to_string())
}

/// A fresh 64-hex-digit ID.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !ok {
        let t = crio_api::time::now_nanos().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = t[i % 8] ^ (i as u8).wrapping_mul(151) ^ (std::process::id() as u8);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The reserved name of a pod: CRI-O's `k8s_NAME_NAMESPACE_UID_ATTEMPT`.
pub fn pod_name(md: &PodSandboxMetadata) -> String {
    format!("k8s_{}_{}_{}_{}", md.name, md.namespace, md.uid, md.attempt)
}

impl Pods {
    /// Loads the pod records under `root/pods` and reserves their names.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let records_dir = config.root.join("pods");
        let pending_dir = config.root.join("pods-pending");
        let run_dir = config.runroot.join("pods");
        // Only root enters: the pods' files and their /dev/shm are reached
        // by containers through their bind mounts, not by path.
        for d in [&records_dir, &pending_dir, &run_dir] {
            crio_storage::dirs::ensure(d, crio_storage::dirs::PRIVATE)
                .with_context(|| format!("create {}", d.display()))?;
        }
        atomic::remove_debris(&records_dir)?;
        let mut records = BTreeMap::new();
        let mut reservations = HashMap::new();
        for entry in std::fs::read_dir(&records_dir)?.flatten() {
            let Some(mut r) = std::fs::read(entry.path())
                .ok()
                .and_then(|d| serde_json::from_slice::<PodRecord>(&d).ok())
            else {
                tracing::warn!(path = %entry.path().display(), "ignoring unreadable pod record");
                continue;
            };
            // After a reboot the volatile state is gone: the pod cannot be
            // ready, but its record stays so stop and remove can clean up
            // (CNI DEL with the cached result releases its addresses).
            if r.state == PodState::Ready && !run_dir.join(r.id.as_str()).exists() {
                tracing::info!(pod = %r.id, "volatile state gone (reboot?): pod is not ready");
                r.state = PodState::NotReady;
                r.shm = None;
                let data = serde_json::to_vec_pretty(&r)?;
                atomic::write(&entry.path(), &data)?;
            }
            let (_, rx) = watch::channel(Some(Ok(r.id.to_string())));
            reservations.insert(
                r.name.clone(),
                Reservation {
                    id: r.id.clone(),
                    config: crate::records::canonical(&r.config),
                    done: rx,
                },
            );
            records.insert(r.id.to_string(), r);
        }
        Ok(Self {
            config: config.clone(),
            records_dir,
            pending_dir,
            run_dir,
            records: Records::new(records),
            reservations: Mutex::new(reservations),
            locks: Mutex::default(),
            pod_cidrs: Mutex::default(),
            shims: std::sync::OnceLock::new(),
        })
    }

    /// Starts each new pod's shim alongside its namespaces and network.
    pub fn set_shims(&self, shims: Arc<crate::shim::Shims>) {
        let _ = self.shims.set(shims);
    }

    /// Shuts the shim of a pod being rolled back down (before its
    /// directory, which holds the shim's address, goes).
    async fn stop_shim(&self, id: &Id) {
        if let Some(shims) = self.shims.get() {
            shims.shutdown(id, &self.run_dir(id)).await;
        }
    }

    fn lock_of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// Every pod record.
    pub fn list(&self) -> Vec<PodRecord> {
        self.records.list()
    }

    /// What `f` makes of each pod it keeps, without cloning the records.
    pub fn filter_map<U>(&self, f: impl FnMut(&PodRecord) -> Option<U>) -> Vec<U> {
        self.records.filter_map(f)
    }

    /// The pod with this ID, or the only pod whose ID starts with it.
    pub fn get(&self, id: &str) -> Option<PodRecord> {
        self.records.get(id)
    }

    /// UpdateRuntimeConfig: the node's pod CIDR(s), comma-separated, handed
    /// to plugins that take the `ipRanges` capability; "" clears it.
    pub fn set_pod_cidr(&self, cidrs: &str) -> Result<(), Status> {
        let mut parsed = Vec::new();
        for cidr in cidrs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let valid = cidr.split_once('/').is_some_and(|(ip, len)| {
                let max = if ip.contains(':') { 128 } else { 32 };
                ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= max)
            });
            if !valid {
                return Err(crio_api::status::invalid_field(
                    "runtime_config.network_config.pod_cidr",
                    format!("{cidr:?} is not a CIDR"),
                ));
            }
            parsed.push(cidr.to_string());
        }
        tracing::info!(pod_cidr = ?parsed, "pod CIDR updated");
        *self.pod_cidrs.lock().unwrap_or_else(|p| p.into_inner()) = parsed;
        Ok(())
    }

    /// Where pod namespaces are pinned.
    pub fn namespaces_dir(&self) -> PathBuf {
        self.config.runtime.namespaces_dir.clone()
    }

    /// The volatile directory of a pod.
    pub fn run_dir(&self, id: &Id) -> PathBuf {
        self.run_dir.join(id.as_str())
    }

    fn save(&self, record: &PodRecord) -> Result<(), (Code, String)> {
        let data = serde_json::to_vec_pretty(record).map_err(internal)?;
        atomic::write(&self.records_dir.join(format!("{}.json", record.id)), &data)
            .map_err(|e| internal(format!("save pod {}: {e}", record.id)))?;
        self.records.insert(&record.id, record.clone());
        Ok(())
    }

    /// RunPodSandbox: reserves the name, then builds the pod in a task of its
    /// own. A retry with the same name and configuration gets the same pod.
    pub async fn run(
        self: &Arc<Self>,
        config: PodSandboxConfig,
        handler: String,
    ) -> Result<String, Status> {
        let md = config
            .metadata
            .clone()
            .ok_or_else(|| crio_api::status::invalid_field("config.metadata", "is required"))?;
        for (field, value) in [
            ("name", &md.name),
            ("namespace", &md.namespace),
            ("uid", &md.uid),
        ] {
            if value.is_empty() {
                return Err(crio_api::status::invalid_field(
                    &format!("config.metadata.{field}"),
                    "must not be empty",
                ));
            }
        }
        if !handler.is_empty() && !self.config.runtime.runtimes.contains_key(&handler) {
            return Err(crio_api::status::invalid_field(
                "runtime_handler",
                format!("no runtime handler {handler:?} is configured"),
            ));
        }
        let name = pod_name(&md);
        let wanted = crate::records::canonical(&config);
        let mut done = {
            let mut reservations = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
            match reservations.get(&name) {
                Some(r) if r.config == wanted => r.done.clone(),
                Some(r) => {
                    return Err(Status::already_exists(format!(
                        "pod sandbox name {name:?} is reserved by {}",
                        r.id
                    )));
                }
                None => {
                    let id = Id::random();
                    let (tx, rx) = watch::channel(None);
                    reservations.insert(
                        name.clone(),
                        Reservation {
                            id: id.clone(),
                            config: wanted,
                            done: rx.clone(),
                        },
                    );
                    let pods = self.clone();
                    tokio::spawn(async move {
                        let outcome = pods.create(&id, &name, config, handler).await;
                        if outcome.is_err() {
                            pods.reservations
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&name);
                        }
                        let _ = tx.send(Some(outcome.map(|()| id.to_string())));
                    });
                    rx
                }
            }
        };
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Status::aborted("pod creation stopped"))?
            .clone();
        match outcome {
            Some(Ok(id)) => Ok(id),
            Some(Err((code, msg))) => Err(Status::new(code, msg)),
            None => Err(Status::aborted("pod creation stopped")),
        }
    }

    async fn create(
        &self,
        id: &Id,
        name: &str,
        config: PodSandboxConfig,
        handler: String,
    ) -> Result<(), (Code, String)> {
        let lock = self.lock_of(id);
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
        record.namespaces = kinds.iter().map(|k| k.name().to_string()).collect();
        self.save_pending(&record)?;
        let result = self.build(&mut record).await;
        match result {
            Ok(()) => {
                self.save(&record)?;
                let _ = std::fs::remove_file(self.pending_dir.join(format!("{id}.json")));
                tracing::info!(pod = %id, name, ips = ?record.ips, elapsed_ms = started.elapsed().as_millis() as u64, "pod ready");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    pod = %id,
                    name,
                    "RunPodSandbox failed, rolling back: {}",
                    e.1
                );
                self.teardown(&record).await;
                self.stop_shim(id).await;
                let _ = std::fs::remove_dir_all(self.run_dir(id));
                let _ = std::fs::remove_file(self.pending_dir.join(format!("{id}.json")));
                Err(e)
            }
        }
    }

    /// The steps of RunPodSandbox; `record` says what exists so far, for
    /// the rollback.
    async fn build(&self, record: &mut PodRecord) -> Result<(), (Code, String)> {
        let dir = self.run_dir(&record.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| internal(format!("create {}: {e}", dir.display())))?;
        let (id, cgroup) = (record.id.clone(), record.cgroup_parent());
        // The shim starts while the namespaces and network are made: the
        // pod's first CreateContainer finds it ready.
        let shim = async {
            let started = std::time::Instant::now();
            if let Some(shims) = self.shims.get() {
                shims
                    .ensure(&id, &dir, &cgroup)
                    .await
                    .map_err(|e| (Code::Unavailable, format!("pod shim: {e}")))?;
            }
            Ok::<_, (Code, String)>(started.elapsed())
        };
        let (shim, rest) = tokio::join!(shim, self.build_in(record, &dir));
        let shim_ms = shim?.as_secs_f64() * 1e3;
        tracing::debug!(pod = %id, shim_ms, "pod shim started");
        rest
    }

    /// The steps of RunPodSandbox but the shim, in the pod's directory.
    async fn build_in(&self, record: &mut PodRecord, dir: &Path) -> Result<(), (Code, String)> {
        let mut steps = crate::steps::Steps::default();
        let kinds = record.kinds();
        let host_net = !kinds.contains(&Kind::Net);
        let md = record.metadata();
        let hostname = if !record.config.hostname.is_empty() {
            record.config.hostname.clone()
        } else if host_net {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            md.name.chars().take(63).collect()
        };

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
                if !netns::namespaced_sysctl(k, &kinds) {
                    return Err((
                        Code::InvalidArgument,
                        format!(
                            "config.linux.sysctls: {k:?} is not namespaced in this pod and cannot be set"
                        ),
                    ));
                }
                sysctls.push((k.clone(), v.clone()));
            }
        }
        if !kinds.is_empty() {
            crate::namespaces::pin(PinRequest {
                kinds: kinds.clone(),
                namespaces_dir: self.config.runtime.namespaces_dir.clone(),
                id: record.id.to_string(),
                hostname: (!host_net).then(|| hostname.clone()),
                sysctls,
            })
            .await
            .map_err(|e| (Code::Internal, format!("pod {}: {e}", record.id)))?;
        }
        steps.mark("namespaces");

        if !host_net {
            let net = &self.config.network;
            let conf = crio_network::load_network(
                &net.network_dir,
                &net.cni_default_network,
                &net.plugin_dirs,
            )
            .map_err(|e| (Code::FailedPrecondition, format!("pod network: {e}")))?;
            let attachment = self.attachment(record);
            let result = cni::add(&conf, &attachment, &net.plugin_dirs)
                .await
                .map_err(|e| (Code::Unknown, format!("pod network: {e}")))?;
            record.ips = cni::result_ips(&result);
            // For the in-process rollback's DEL and the pod's record.
            record.network = Some((conf.name.clone(), result));
        }
        steps.mark("network");

        let host_etc =
            |f: &str| std::fs::read_to_string(Path::new("/etc").join(f)).unwrap_or_default();
        // Readable by the containers' users, whatever the daemon's umask.
        let write = |file: &str, content: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(file);
            std::fs::write(&path, content)
                .and_then(|()| {
                    let readable = std::fs::Permissions::from_mode(0o644);
                    std::fs::File::open(&path)?.set_permissions(readable)
                })
                .map_err(|e| internal(format!("write {file}: {e}")))
        };
        write("hostname", &format!("{hostname}\n"))?;
        write(
            "resolv.conf",
            &files::resolv_conf(record.config.dns_config.as_ref(), &host_etc("resolv.conf")),
        )?;
        if host_net {
            write("hosts", &host_etc("hosts"))?;
        } else {
            write("hosts", &files::hosts(&hostname, &record.ips))?;
        }
        if let Some(shm) = &record.shm {
            std::fs::create_dir_all(shm).map_err(internal)?;
            nix::mount::mount(
                Some("shm"),
                shm,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                Some("mode=1777,size=67108864"),
            )
            .map_err(|e| internal(format!("mount /dev/shm of pod {}: {e}", record.id)))?;
        }
        steps.mark("files");
        tracing::debug!(pod = %record.id, steps = %steps.summary(), "pod built");
        Ok(())
    }

    /// Records how far RunPodSandbox of `record` got.
    fn save_pending(&self, record: &PodRecord) -> Result<(), (Code, String)> {
        let data = serde_json::to_vec(record).map_err(internal)?;
        atomic::write(&self.pending_dir.join(format!("{}.json", record.id)), &data)
            .map_err(|e| internal(format!("save pod {} in progress: {e}", record.id)))
    }

    /// Rolls back every RunPodSandbox a crash interrupted: CNI DEL (with
    /// the cached result, or without one when the ADD may have been under
    /// way), /dev/shm unmounted, namespaces unpinned, files removed.
    pub async fn recover_pending(&self) {
        let entries: Vec<_> = std::fs::read_dir(&self.pending_dir)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        for entry in entries {
            let path = entry.path();
            let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<PodRecord>(&d).ok())
            else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if self
                .records
                .get(&record.id)
                .is_some_and(|r| r.id == record.id)
            {
                // Made after all (killed between the two writes).
                let _ = std::fs::remove_file(&path);
                continue;
            }
            tracing::info!(pod = %record.id, "rolling back a RunPodSandbox interrupted by a crash");
            if record.network.is_none() && record.kinds().contains(&Kind::Net) {
                self.del_unrecorded_network(&record).await;
            }
            self.teardown(&record).await;
            self.stop_shim(&record.id).await;
            let _ = std::fs::remove_dir_all(self.run_dir(&record.id));
            let _ = std::fs::remove_file(&path);
        }
    }

    /// CNI CHECK of every ready pod's network, after a start: a pod whose
    /// interface or address went missing while the daemon was down is
    /// reported (the plugin's error, naming the pod) instead of failing later.
    pub async fn check_networks(&self) {
        let net = &self.config.network;
        for record in self.list() {
            let Some((name, result)) = record
                .network
                .as_ref()
                .filter(|_| record.state == PodState::Ready)
            else {
                continue;
            };
            let Ok(conf) = crio_network::load_network(&net.network_dir, name, &net.plugin_dirs)
            else {
                tracing::warn!(pod = %record.id, "network {name:?} of the pod is gone: not checked");
                continue;
            };
            match cni::check(&conf, &self.attachment(&record), result, &net.plugin_dirs).await {
                Ok(()) => tracing::debug!(pod = %record.id, "CNI CHECK passed"),
                Err(e) => tracing::warn!(pod = %record.id, "pod network broken (CNI CHECK): {e}"),
            }
        }
    }

    /// CNI DEL on the default network without a cached result (the ADD may
    /// have run to its end while the daemon was being killed).
    async fn del_unrecorded_network(&self, record: &PodRecord) {
        let net = &self.config.network;
        if let Ok(conf) =
            crio_network::load_network(&net.network_dir, &net.cni_default_network, &net.plugin_dirs)
            && let Err(e) = cni::del(&conf, &self.attachment(record), None, &net.plugin_dirs).await
        {
            tracing::warn!(pod = %record.id, "CNI DEL: {e}");
        }
    }

    fn attachment(&self, record: &PodRecord) -> Attachment {
        let md = record.metadata();
        let mut capabilities = BTreeMap::new();
        let ports: Vec<Value> = record
            .config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(port_mapping)
            .collect();
        if !ports.is_empty() {
            capabilities.insert("portMappings".to_string(), Value::Array(ports));
        }
        let cidrs = self
            .pod_cidrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !cidrs.is_empty() {
            let ranges: Vec<Value> = cidrs.iter().map(|c| json!([{ "subnet": c }])).collect();
            capabilities.insert("ipRanges".to_string(), Value::Array(ranges));
        }
        let bandwidth = bandwidth(&record.config.annotations);
        if let Some(b) = bandwidth {
            capabilities.insert("bandwidth".to_string(), b);
        }
        Attachment {
            container_id: record.id.to_string(),
            netns: netns::pin_path(&self.config.runtime.namespaces_dir, Kind::Net, &record.id),
            ifname: "eth0".into(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), md.namespace.clone()),
                ("K8S_POD_NAME".into(), md.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), record.id.to_string()),
                ("K8S_POD_UID".into(), md.uid.clone()),
            ],
            capabilities,
        }
    }

    /// Undoes what `record` says exists: network, /dev/shm, namespaces.
    async fn teardown(&self, record: &PodRecord) {
        self.stop_network(record).await;
        if let Some(shm) = &record.shm {
            let _ = crio_storage::mount::unmount(shm);
        }
        if let Some(e) = netns::unpin(
            &self.config.runtime.namespaces_dir,
            &record.id,
            &record.kinds(),
        ) {
            tracing::warn!(pod = %record.id, "{e}");
        }
    }

    async fn stop_network(&self, record: &PodRecord) {
        let Some((name, result)) = &record.network else {
            return;
        };
        let net = &self.config.network;
        // The network the pod joined, even if the default changed since.
        let conf = crio_network::load_network(&net.network_dir, name, &net.plugin_dirs);
        match conf {
            Ok(conf) => {
                if let Err(e) = cni::del(
                    &conf,
                    &self.attachment(record),
                    Some(result),
                    &net.plugin_dirs,
                )
                .await
                {
                    tracing::warn!(pod = %record.id, "CNI DEL: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(pod = %record.id, "CNI DEL skipped, network {name:?} gone: {e}")
            }
        }
    }

    /// StopPodSandbox: network down, /dev/shm unmounted, state NotReady. An
    /// unknown pod is not an error.
    pub async fn stop(&self, id: &str) -> Result<(), Status> {
        let Some(record) = self.get(id) else {
            return Ok(());
        };
        let lock = self.lock_of(&record.id);
        let _held = lock.lock().await;
        let Some(mut record) = self.get(&record.id) else {
            return Ok(());
        };
        if record.state == PodState::NotReady && record.network.is_none() && record.shm.is_none() {
            return Ok(());
        }
        self.stop_network(&record).await;
        if let Some(shm) = &record.shm {
            crio_storage::mount::unmount(shm)
                .map_err(|e| Status::internal(format!("unmount {}: {e}", shm.display())))?;
        }
        record.state = PodState::NotReady;
        record.network = None;
        record.shm = None;
        self.save(&record).map_err(|(c, m)| Status::new(c, m))?;
        tracing::info!(pod = %record.id, "pod stopped");
        Ok(())
    }

    /// RemovePodSandbox: stops the pod if needed, unpins its namespaces,
    /// removes its directories, record and name. An unknown pod is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), Status> {
        let Some(record) = self.get(id) else {
            return Ok(());
        };
        self.stop(&record.id).await?;
        let lock = self.lock_of(&record.id);
        let _held = lock.lock().await;
        let Some(record) = self.get(&record.id) else {
            return Ok(());
        };
        if let Some(e) = netns::unpin(
            &self.config.runtime.namespaces_dir,
            &record.id,
            &record.kinds(),
        ) {
            return Err(Status::internal(format!("pod {}: {e}", record.id)));
        }
        let dir = self.run_dir(&record.id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Status::internal(format!("remove {}: {e}", dir.display())))?;
        }
        let file = self.records_dir.join(format!("{}.json", record.id));
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Status::internal(format!("remove {}: {e}", file.display())));
            }
            _ => {}
        }
        self.records.remove(&record.id);
        self.reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&record.name);
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(record.id.as_str());
        tracing::info!(pod = %record.id, "pod removed");
        Ok(())
    }
}

/// A CRI port mapping in the portmap plugin's runtime-config form.
fn port_mapping(p: &PortMapping) -> Value {
    let protocol = match Protocol::try_from(p.protocol) {
        Ok(Protocol::Udp) => "udp",
        Ok(Protocol::Sctp) => "sctp",
        _ => "tcp",
    };
    let mut m =
        json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": protocol});
    if !p.host_ip.is_empty() {
        m["hostIP"] = json!(p.host_ip);
    }
    m
}

/// The bandwidth plugin's runtime config from the kubernetes.io bandwidth
/// annotations (`10M`, `1G`… in bits per second).
fn bandwidth(annotations: &HashMap<String, String>) -> Option<Value> {
    let rate = |key: &str| -> Option<u64> {
        let text = annotations.get(key)?.trim();
        let (number, unit) = text.split_at(
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len()),
        );
        let n: u64 = number.parse().ok()?;
        let factor: u64 = match unit {
            "" => 1,
            "k" | "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(factor)
    };
    let ingress = rate("kubernetes.io/ingress-bandwidth");
    let egress = rate("kubernetes.io/egress-bandwidth");
    if ingress.is_none() && egress.is_none() {
        return None;
    }
    let mut b = serde_json::Map::new();
    if let Some(i) = ingress {
        b.insert("ingressRate".into(), json!(i));
        b.insert("ingressBurst".into(), json!(i32::MAX));
    }
    if let Some(e) = egress {
        b.insert("egressRate".into(), json!(e));
        b.insert("egressBurst".into(), json!(i32::MAX));
    }
    Some(Value::Object(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_ports_bandwidth() {
        let md = PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 2,
        };
        assert_eq!(pod_name(&md), "k8s_web_default_u1_2");
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        let m = port_mapping(&PortMapping {
            protocol: Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        });
        assert_eq!(
            m,
            json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"})
        );
        let mut ann = HashMap::new();
        assert!(bandwidth(&ann).is_none());
        ann.insert(
            "kubernetes.io/ingress-bandwidth".to_string(),
            "10M".to_string(),
        );
        assert_eq!(bandwidth(&ann).unwrap()["ingressRate"], 10_000_000);
        ann.insert(
            "kubernetes.io/egress-bandwidth".to_string(),
            "bogus".to_string(),
        );
        assert!(bandwidth(&ann).unwrap().get("egressRate").is_none());
    }
}
