//! SIGHUP: re-reads the configuration files the daemon started with (the
//! same `--config`, `--config-dir` and flags) and applies the options that
//! can change without a restart, logging each change; a file that does not
//! load keeps every old value.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::Cli;
use crate::cri::State;
use crate::handlers::Handlers;

/// A reloadable option that changed: its dotted key, old and new value.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// The dotted key, e.g. `crio.runtime.log_level`.
    pub key: &'static str,
    /// The value before the reload.
    pub old: String,
    /// The value after it.
    pub new: String,
}

/// What a reload compares and applies, from one loaded configuration.
#[derive(Debug, Clone, PartialEq)]
struct Reloadable {
    log_level: String,
    log_filter: String,
    image: crio_config::ImageConfig,
    seccomp_profile: std::path::PathBuf,
    apparmor_profile: String,
}

impl Reloadable {
    fn of(config: &crio_config::Config) -> Self {
        Self {
            log_level: config.runtime.log_level.clone(),
            log_filter: config.runtime.log_filter.clone(),
            image: config.image.clone(),
            seccomp_profile: config.runtime.seccomp_profile.clone(),
            apparmor_profile: config.runtime.apparmor_profile.clone(),
        }
    }

    /// Writes these values over `config`'s.
    fn apply_to(&self, config: &mut crio_config::Config) {
        config.runtime.log_level = self.log_level.clone();
        config.runtime.log_filter = self.log_filter.clone();
        config.image = self.image.clone();
        config.runtime.seccomp_profile = self.seccomp_profile.clone();
        config.runtime.apparmor_profile = self.apparmor_profile.clone();
    }

    /// The reloadable keys whose values differ between `self` and `new`.
    fn changes(&self, new: &Self) -> Vec<Change> {
        let pairs = [
            ("crio.runtime.log_level", &self.log_level, &new.log_level),
            ("crio.runtime.log_filter", &self.log_filter, &new.log_filter),
            (
                "crio.image.pause_image",
                &self.image.pause_image,
                &new.image.pause_image,
            ),
            (
                "crio.image.pause_command",
                &self.image.pause_command,
                &new.image.pause_command,
            ),
            (
                "crio.runtime.apparmor_profile",
                &self.apparmor_profile,
                &new.apparmor_profile,
            ),
        ];
        let mut changes: Vec<Change> = pairs
            .into_iter()
            .filter(|(_, old, new)| old != new)
            .map(|(key, old, new)| Change {
                key,
                old: old.clone(),
                new: new.clone(),
            })
            .collect();
        let paths = [
            (
                "crio.image.pause_image_auth_file",
                &self.image.pause_image_auth_file,
                &new.image.pause_image_auth_file,
            ),
            (
                "crio.runtime.seccomp_profile",
                &self.seccomp_profile,
                &new.seccomp_profile,
            ),
        ];
        changes.extend(paths.into_iter().filter(|(_, old, new)| old != new).map(
            |(key, old, new)| Change {
                key,
                old: old.display().to_string(),
                new: new.display().to_string(),
            },
        ));
        changes
    }
}

/// A configuration loaded again, with the files it names read.
struct Reloaded {
    values: Reloadable,
    seccomp: Option<crio_spec::seccomp::Profile>,
    /// Its runtimes table (paths resolved).
    runtimes: BTreeMap<String, crio_config::RuntimeHandler>,
    /// Its handlers the daemon does not know yet, probed.
    added: Handlers,
}

/// Loads the configuration again and checks the reloadable values (the
/// pause image a reference, the seccomp profile a profile); the error names
/// the file and key at fault.
fn load(cli: &Cli, known: &[String]) -> Result<Reloaded, crio_config::ConfigError> {
    let mut loaded = cli.load_config()?;
    let refuse = |key: &str, reason: String| crio_config::ConfigError {
        source_name: loaded.origin(key).to_string(),
        key: key.into(),
        reason,
    };
    let pause = &loaded.config.image.pause_image;
    if let Err(e) = crio_image::reference::Reference::parse(pause) {
        return Err(refuse("crio.image.pause_image", format!("{pause:?}: {e}")));
    }
    let profile = &loaded.config.runtime.seccomp_profile;
    let seccomp = crio_spec::seccomp::Profile::configured(profile).map_err(|e| {
        refuse(
            "crio.runtime.seccomp_profile",
            format!("{}: {e}", profile.display()),
        )
    })?;
    let path_env = std::env::var("PATH").unwrap_or_default();
    let platform = crio_config::host_platform();
    let missing =
        crio_config::resolve_runtimes(&mut loaded.config, &loaded.origins, &path_env, &platform)?;
    let mut new_only = loaded.config.clone();
    new_only
        .runtime
        .runtimes
        .retain(|name, _| !known.contains(name));
    Ok(Reloaded {
        values: Reloadable::of(&loaded.config),
        seccomp,
        added: crate::handlers::probed(&new_only, &missing),
        runtimes: loaded.config.runtime.runtimes,
    })
}

/// SIGHUP, caught from the moment this is called: the socket opens before
/// the reload task runs, and an early SIGHUP must not kill the daemon.
pub fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(hup) => Some(hup),
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP ({e}): reload needs a restart");
            None
        }
    }
}

/// Reloads on every SIGHUP of `hup`; `started` is the configuration loaded
/// at start (a SIGHUP before this runs waits in `hup`).
pub async fn on_sighup(
    mut hup: Signal,
    state: Arc<State>,
    cli: Arc<Cli>,
    started: crio_config::Config,
) {
    let mut current = Reloadable::of(&started);
    while hup.recv().await.is_some() {
        // The files are read and new runtimes probed off the executor.
        let (cli, images) = (cli.clone(), state.images.clone());
        let known = state.handlers.names();
        let read = tokio::task::spawn_blocking(move || (load(&cli, &known), images.reload())).await;
        let Ok((config, registries)) = read else {
            tracing::error!("SIGHUP: the reload task failed; nothing changed");
            continue;
        };
        match config {
            Ok(new) => {
                apply(&state, &current, &new.values);
                state
                    .containers
                    .set_security_profiles(new.seccomp, new.values.apparmor_profile.clone());
                // Loads crio-default if it became the default, or failed before.
                state
                    .apparmor
                    .ensure(&new.values.apparmor_profile, &state.config.runroot)
                    .await;
                let mut effective = state.effective_config();
                new.values.apply_to(&mut effective);
                add_handlers(&state, &mut effective, new.added, new.runtimes);
                *state.reloaded.lock() = Some(effective);
                current = new.values;
            }
            Err(e) => {
                tracing::error!("SIGHUP: reload refused, keeping the previous configuration: {e}")
            }
        }
        match registries {
            Ok(()) => tracing::info!("SIGHUP: reloaded registries, policy and auth file"),
            Err(e) => tracing::error!(
                "SIGHUP: registries or policy reload failed, keeping the previous ones: {e:#}"
            ),
        }
    }
}

/// Adds the handlers of `added` to the daemon's and to `effective`'s
/// runtimes table (`runtimes` is the reloaded one); a handler changed or
/// removed in the files is logged: that takes a restart.
fn add_handlers(
    state: &State,
    effective: &mut crio_config::Config,
    added: Handlers,
    mut runtimes: BTreeMap<String, crio_config::RuntimeHandler>,
) {
    for (name, running) in &effective.runtime.runtimes {
        match runtimes.remove(name) {
            None => tracing::warn!(
                "SIGHUP: runtime handler {name:?} was removed from the files: it stays until a restart"
            ),
            Some(new) if &new != running => tracing::warn!(
                "SIGHUP: runtime handler {name:?} changed in the files: the change takes a restart"
            ),
            Some(_) => {}
        }
    }
    for name in state.handlers.add_new(added) {
        tracing::info!("SIGHUP: crio.runtime.runtimes.{name}: runtime handler added");
        if let Some(config) = runtimes.remove(&name) {
            effective.runtime.runtimes.insert(name, config);
        }
    }
}

/// Applies `new` over `old` and logs each changed key.
fn apply(state: &State, old: &Reloadable, new: &Reloadable) {
    let changes = old.changes(new);
    if changes.is_empty() {
        tracing::info!("SIGHUP: no reloadable option changed");
        return;
    }
    if old.log_level != new.log_level
        && let Err(e) = crate::logging::set_level(&new.log_level)
    {
        tracing::warn!("SIGHUP: log level not changed: {e}");
    }
    if old.log_filter != new.log_filter
        && let Err(e) = crate::logging::set_filter(&new.log_filter)
    {
        tracing::warn!("SIGHUP: log filter not changed: {e}");
    }
    if old.image != new.image {
        state.containers.set_image_config(new.image.clone());
    }
    for c in changes {
        tracing::info!("SIGHUP: {}: {:?} -> {:?}", c.key, c.old, c.new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_keys_are_listed() {
        let config = crio_config::Config::default();
        let old = Reloadable::of(&config);
        assert!(old.changes(&old).is_empty());
        let mut new = old.clone();
        new.log_level = "debug".into();
        new.image.pause_image = "registry.example/pause:9".into();
        let changes = old.changes(&new);
        let keys: Vec<_> = changes.iter().map(|c| c.key).collect();
        assert_eq!(keys, ["crio.runtime.log_level", "crio.image.pause_image"]);
        assert_eq!(changes[1].new, "registry.example/pause:9");
        assert_eq!(changes[0].old, config.runtime.log_level);
    }
}
