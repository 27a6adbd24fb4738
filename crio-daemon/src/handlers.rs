//! Runtime handlers as the daemon runs them: each configured
//! `[crio.runtime.runtimes.NAME]` resolved to the binary started for each
//! of its pods (crio-rs's shim or the handler's `monitor_path` for `oci`,
//! the containerd shim v2 at `runtime_path` for `vm`), the OCI runtime and
//! root that shim runs, and what the probes run at start found it can do —
//! or why it cannot run pods at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crio_api::cri::{RuntimeHandler as CriHandler, RuntimeHandlerFeatures};
use crio_config::{Config, RuntimeType};

/// One runtime handler, resolved and probed.
#[derive(Debug, Clone)]
pub struct Handler {
    /// Its name in the configuration.
    pub name: String,
    /// `oci` or `vm`.
    pub kind: RuntimeType,
    /// The binary started for each pod (None: not found).
    pub shim: Option<PathBuf>,
    /// The OCI runtime the shim runs (`oci` handlers).
    pub runtime: PathBuf,
    /// The runtime's state directory.
    pub runtime_root: PathBuf,
    /// Extra environment of the shim, from `monitor_env`.
    pub monitor_env: Vec<(String, String)>,
    /// Privileged containers get no host devices.
    pub privileged_without_host_devices: bool,
    /// Annotations each container gets unless it sets them.
    pub default_annotations: BTreeMap<String, String>,
    /// What the probes found it can do.
    pub features: RuntimeHandlerFeatures,
    /// Why pods cannot run under it (None: they can).
    pub unusable: Option<String>,
}

/// Why a pod cannot run under the handler it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// No handler of that name is configured.
    #[error("runtime_handler {0:?}: no such runtime handler is configured")]
    Unknown(String),
    /// The handler is configured but failed at start.
    #[error("runtime_handler {name:?} cannot run pods: {reason}")]
    Unusable {
        /// The handler.
        name: String,
        /// What its probe found.
        reason: String,
    },
}

/// What the probes see of the host, read once.
pub struct Host {
    /// The kernel release (`6.1.0-18-amd64`).
    pub kernel: String,
    /// Whether the daemon can make user namespaces and idmapped mounts
    /// here (see `crate::userns::probe_host`).
    pub userns: bool,
}

/// A probe: fills in a feature of `handler`, or says why it cannot run
/// pods. More probes (user namespaces, say) go into [`PROBES`].
type Probe = fn(&mut Handler, &Host) -> Result<(), String>;

/// The probes, in order; the first that fails makes the handler unusable.
const PROBES: &[Probe] = &[shim_found, runtime_features];

/// Where a handler's shim binary is looked for when it names none.
pub struct Locator<'a> {
    /// The daemon's own executable (its shim sits beside it).
    pub own_exe: Option<&'a Path>,
    /// The daemon's PATH.
    pub path_env: &'a str,
}

/// Every configured handler, by name, and which one is the default; a
/// SIGHUP may add handlers (see [`Handlers::add_new`]).
#[derive(Debug)]
pub struct Handlers {
    default: String,
    by_name: parking_lot::RwLock<BTreeMap<String, Handler>>,
}

impl Handlers {
    /// The handlers of `config` (runtime paths resolved), those of
    /// `missing` unusable for the reason given, none probed yet.
    pub fn configured(
        config: &Config,
        missing: &BTreeMap<String, String>,
        locator: &Locator<'_>,
    ) -> Self {
        let by_name = config
            .runtime
            .runtimes
            .iter()
            .map(|(name, h)| {
                let kind = h.kind();
                let shim = match kind {
                    RuntimeType::Oci => crate::shim_binary::locate(
                        &h.monitor_path,
                        locator.own_exe,
                        locator.path_env,
                    ),
                    RuntimeType::Vm => Some(h.runtime_path.clone()),
                };
                let handler = Handler {
                    name: name.clone(),
                    kind,
                    shim,
                    runtime: h.runtime_path.clone(),
                    runtime_root: h.runtime_root.clone(),
                    monitor_env: h
                        .monitor_env
                        .iter()
                        .filter_map(|e| e.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    privileged_without_host_devices: h.privileged_without_host_devices,
                    default_annotations: h.default_annotations.clone(),
                    features: RuntimeHandlerFeatures::default(),
                    unusable: missing.get(name).cloned(),
                };
                (name.clone(), handler)
            })
            .collect();
        Self {
            default: config.runtime.default_runtime.clone(),
            by_name: parking_lot::RwLock::new(by_name),
        }
    }

    /// Runs the probes on every handler still usable (blocking: runtimes
    /// run, each under a deadline) and logs each that cannot run pods.
    pub fn probe(self, host: &Host) -> Self {
        for handler in self.by_name.write().values_mut() {
            if handler.unusable.is_none() {
                handler.unusable = PROBES.iter().find_map(|p| p(handler, host).err());
            }
            if let Some(reason) = &handler.unusable {
                tracing::warn!(handler = %handler.name, "runtime handler cannot run pods: {reason}");
            }
        }
        self
    }

    /// The handler a pod asking for `name` runs under ("" is the default).
    pub fn resolve(&self, name: &str) -> Result<Handler, HandlerError> {
        let handler = self
            .get(name)
            .ok_or_else(|| HandlerError::Unknown(name.into()))?;
        match handler.unusable {
            None => Ok(handler),
            Some(reason) => Err(HandlerError::Unusable {
                name: handler.name,
                reason,
            }),
        }
    }

    /// The handler named `name` ("" is the default), usable or not.
    pub fn get(&self, name: &str) -> Option<Handler> {
        let name = if name.is_empty() {
            self.default.as_str()
        } else {
            name
        };
        self.by_name.read().get(name).cloned()
    }

    /// Whether any handler has a shim binary.
    pub fn any_shim(&self) -> bool {
        self.by_name.read().values().any(|h| h.shim.is_some())
    }

    /// Adds the handlers of `reloaded` (probed) that are not configured
    /// yet and returns their names; the handlers already here stay as they
    /// are (pods run under them), as does the default.
    pub fn add_new(&self, reloaded: Handlers) -> Vec<String> {
        let mut by_name = self.by_name.write();
        let mut added = Vec::new();
        for (name, handler) in reloaded.by_name.into_inner() {
            if !by_name.contains_key(&name) {
                by_name.insert(name.clone(), handler);
                added.push(name);
            }
        }
        added
    }

    /// The names of the handlers configured now.
    pub fn names(&self) -> Vec<String> {
        self.by_name.read().keys().cloned().collect()
    }

    /// Status's `runtime_handlers`: the default under the empty name (the
    /// kubelet's name for it) and every usable handler under its own.
    pub fn status_entries(&self) -> Vec<CriHandler> {
        let entry = |name: &str, h: &Handler| CriHandler {
            name: name.to_string(),
            features: Some(h.features),
        };
        // One read of the table: a second one in this thread could wait
        // behind a SIGHUP's write queued in between (the lock is fair).
        let by_name = self.by_name.read();
        let usable = || by_name.values().filter(|h| h.unusable.is_none());
        usable()
            .find(|h| h.name == self.default)
            .map(|h| entry("", h))
            .into_iter()
            .chain(usable().map(|h| entry(&h.name, h)))
            .collect()
    }

    /// Every handler with its type, binaries, features and, for those that
    /// cannot run pods, why: Status's verbose info.
    pub fn report(&self) -> serde_json::Value {
        let handlers: serde_json::Map<_, _> = self
            .by_name
            .read()
            .values()
            .map(|h| {
                let value = serde_json::json!({
                    "runtime_type": match h.kind { RuntimeType::Oci => "oci", RuntimeType::Vm => "vm" },
                    "runtime_path": h.runtime,
                    "runtime_root": h.runtime_root,
                    "shim": h.shim,
                    "usable": h.unusable.is_none(),
                    "reason": h.unusable.clone().unwrap_or_default(),
                    "recursive_read_only_mounts": h.features.recursive_read_only_mounts,
                    "user_namespaces": h.features.user_namespaces,
                });
                (h.name.clone(), value)
            })
            .collect();
        serde_json::json!({ "default": self.default, "handlers": handlers })
    }
}

/// The handlers of `config` (runtime paths resolved, those of `missing`
/// unusable for the reason given), each probed; blocking (runtimes run),
/// so called off the executor. Their shims are looked for beside the
/// daemon's executable and on its PATH.
pub fn probed(config: &Config, missing: &BTreeMap<String, String>) -> Handlers {
    let own_exe = std::env::current_exe().ok();
    let path_env = std::env::var("PATH").unwrap_or_default();
    let locator = Locator {
        own_exe: own_exe.as_deref(),
        path_env: &path_env,
    };
    // The host probe makes a user namespace and mounts: only when there
    // are handlers to probe (a SIGHUP that adds none probes nothing).
    let userns = !config.runtime.runtimes.is_empty()
        && match crate::userns::probe_host(&config.root, &config.runroot) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("user namespaces are not available: {e}");
                false
            }
        };
    let host = Host {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default(),
        userns,
    };
    Handlers::configured(config, missing, &locator).probe(&host)
}

/// The binary started for each pod must exist.
fn shim_found(handler: &mut Handler, _host: &Host) -> Result<(), String> {
    match handler.shim {
        Some(_) => Ok(()),
        None => Err(format!(
            "pod shim {} not found (monitor_path, beside crio, PATH)",
            crate::shim_binary::SHIM_NAME
        )),
    }
}

/// `RUNTIME features` must answer with JSON (crun 1.8 has no such command
/// and fails on this kind of host): recursive read-only mounts when it
/// lists `rro` and the kernel has mount_setattr (5.12), user namespaces
/// when it lists them and the host can idmap. A `vm` handler's
/// binary is a shim v2, which has no such command.
fn runtime_features(handler: &mut Handler, host: &Host) -> Result<(), String> {
    if handler.kind == RuntimeType::Vm {
        return Ok(());
    }
    let out = crate::command::run_within(
        std::process::Command::new(&handler.runtime).arg("features"),
        crate::command::RUNTIME_DEADLINE,
    )
    .map_err(|e| format!("`{} features` failed: {e}", handler.runtime.display()))?;
    let features: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
        format!(
            "`{} features` answered no JSON: {e}",
            handler.runtime.display()
        )
    })?;
    handler.features.recursive_read_only_mounts = rro_supported(&features, &host.kernel);
    handler.features.user_namespaces = host.userns && crate::userns::runtime_supports(&features);
    Ok(())
}

/// Whether `features` (the runtime's) lists the `rro` mount option and
/// `kernel` (a release like `6.1.0-18-amd64`) is 5.12 or later.
fn rro_supported(features: &serde_json::Value, kernel: &str) -> bool {
    let listed = features["mountOptions"]
        .as_array()
        .is_some_and(|o| o.iter().any(|x| x == "rro"));
    let mut parts = kernel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    listed && version >= (5, 12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rro_needs_the_runtime_and_the_kernel() {
        let with = serde_json::json!({"mountOptions": ["ro", "rro"]});
        assert!(rro_supported(&with, "6.18.44-fc\n"));
        assert!(rro_supported(&with, "5.12.0"));
        assert!(!rro_supported(&with, "5.11.9"));
        assert!(!rro_supported(
            &serde_json::json!({"mountOptions": ["ro"]}),
            "6.1.0"
        ));
        assert!(!rro_supported(&serde_json::Value::Null, "6.1.0"));
    }

    fn script(path: &Path, body: &str) {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Handlers `good` (default), `broken` (its features fail), `gone`
    /// (its binary missing) and `vm`, all with a shim found.
    fn handlers(dir: &Path) -> Handlers {
        let (good, broken, shim) = (dir.join("good"), dir.join("broken"), dir.join("shim"));
        script(&good, r#"echo '{"mountOptions": ["rro"]}'"#);
        script(&broken, "echo 'unknown command features' >&2; exit 1");
        script(&shim, "exit 0");
        let mut config = Config::default();
        config.runtime.default_runtime = "good".into();
        let runtimes = &mut config.runtime.runtimes;
        runtimes.clear();
        for (name, path, kind) in [
            ("good", &good, "oci"),
            ("broken", &broken, "oci"),
            ("gone", &dir.join("nope"), "oci"),
            ("vm", &shim, "vm"),
        ] {
            runtimes.insert(
                name.into(),
                crio_config::RuntimeHandler {
                    runtime_path: path.clone(),
                    runtime_type: kind.into(),
                    monitor_path: shim.clone(),
                    ..Default::default()
                },
            );
        }
        let missing = BTreeMap::from([("gone".to_string(), "runtime binary missing".to_string())]);
        let locator = Locator {
            own_exe: None,
            path_env: "",
        };
        Handlers::configured(&config, &missing, &locator).probe(&Host {
            kernel: "6.1.0".into(),
            userns: true,
        })
    }

    #[test]
    fn probes_tell_usable_handlers_from_the_others() {
        let tmp = tempfile::tempdir().unwrap();
        let h = handlers(tmp.path());
        assert_eq!(h.resolve("").unwrap().name, "good");
        assert!(
            h.resolve("good")
                .unwrap()
                .features
                .recursive_read_only_mounts
        );
        assert_eq!(h.resolve("vm").unwrap().shim, Some(tmp.path().join("shim")));
        let err = h.resolve("broken").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"broken\"") && text.contains("unknown command features"),
            "{text}"
        );
        assert!(
            h.resolve("gone")
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        assert_eq!(
            h.resolve("kata").unwrap_err(),
            HandlerError::Unknown("kata".into())
        );
        let names: Vec<_> = h.status_entries().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["", "good", "vm"]);
        let report = h.report();
        assert_eq!(report["handlers"]["broken"]["usable"], false);
        assert_eq!(report["default"], "good");
    }

    #[test]
    fn a_reload_adds_new_handlers_and_keeps_the_old_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let h = handlers(tmp.path());
        let mut config = Config::default();
        config.runtime.default_runtime = "other".into();
        let runtimes = &mut config.runtime.runtimes;
        runtimes.clear();
        for name in ["good", "new"] {
            runtimes.insert(
                name.into(),
                crio_config::RuntimeHandler {
                    runtime_path: tmp.path().join("elsewhere"),
                    monitor_path: tmp.path().join("shim"),
                    ..Default::default()
                },
            );
        }
        let locator = Locator {
            own_exe: None,
            path_env: "",
        };
        let reloaded = Handlers::configured(&config, &Default::default(), &locator);
        assert_eq!(h.add_new(reloaded), ["new"]);
        assert_eq!(h.resolve("new").unwrap().name, "new");
        assert_eq!(h.resolve("good").unwrap().runtime, tmp.path().join("good"));
        assert_eq!(h.resolve("").unwrap().name, "good", "the default stays");
        assert_eq!(h.names(), ["broken", "gone", "good", "new", "vm"]);
    }
}
