//! What the image's configuration contributes: argv, environment, user,
//! volumes and the stop signal.

use crio_api::cri::ContainerConfig;

use crate::{ImageConfig, SpecError, invalid};

/// argv the Kubernetes way: `command` replaces the entrypoint and drops the
/// image's cmd; `args` replaces cmd.
pub fn argv(config: &ContainerConfig, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let entrypoint = image.entrypoint().clone().unwrap_or_default();
    let cmd = image.cmd().clone().unwrap_or_default();
    let args = match (config.command.is_empty(), config.args.is_empty()) {
        (false, _) => [config.command.clone(), config.args.clone()].concat(),
        (true, false) => [entrypoint, config.args.clone()].concat(),
        (true, true) => [entrypoint, cmd].concat(),
    };
    if args.is_empty() {
        return Err(invalid(
            "config.command",
            "no command given and the image has no entrypoint or cmd",
        ));
    }
    Ok(args)
}

/// Environment: the image's, then the daemon's defaults, then the request's;
/// later values of a key replace earlier ones in place.
pub fn environment(
    config: &ContainerConfig,
    image: &ImageConfig,
    defaults: &[String],
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set("HOSTNAME", hostname);
    let image_env = image.env().as_deref().unwrap_or_default();
    for e in image_env.iter().chain(defaults) {
        if let Some((k, v)) = e.split_once('=') {
            set(k, v);
        }
    }
    for kv in &config.envs {
        set(&kv.key, &kv.value);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The image's `User` ("" when it names none).
pub(crate) fn user(image: &ImageConfig) -> &str {
    image.user().as_deref().unwrap_or("")
}

/// The image's `WorkingDir`, `/` when it names none.
pub(crate) fn working_dir(image: &ImageConfig) -> String {
    image
        .working_dir()
        .as_deref()
        .filter(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string()
}

/// The image's `Volumes` (container paths), sorted.
pub fn image_volumes(image: &ImageConfig) -> Vec<String> {
    let mut v: Vec<String> = image
        .volumes()
        .iter()
        .flatten()
        .filter(|k| k.starts_with('/'))
        .cloned()
        .collect();
    v.sort();
    v
}

/// The signal that stops a container of `image` (its `StopSignal`:
/// `SIGUSR1`, `USR1` or `10`); SIGTERM when it names none. An unknown name
/// is an error naming it.
pub fn stop_signal(image: &ImageConfig) -> Result<u32, SpecError> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    let Some(text) = image.stop_signal().as_deref().filter(|s| !s.is_empty()) else {
        return Ok(15);
    };
    let invalid = || invalid("image StopSignal", format!("{text:?} is not a signal"));
    if let Ok(n) = text.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n).ok_or_else(invalid);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32 + 1)
        .ok_or_else(invalid)
}
