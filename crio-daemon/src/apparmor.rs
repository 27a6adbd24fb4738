//! The default AppArmor profile `crio-default`: its text, and loading it
//! with `apparmor_parser` when the host has AppArmor and the configuration
//! names it (`crio.runtime.apparmor_profile`) but the kernel does not have it
//! yet. A default profile of another name is the operator's to load.
//!
//! The profile is self-contained (no `#include`), so it loads wherever
//! `apparmor_parser` runs, with or without `/etc/apparmor.d`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The name of the profile the daemon generates and loads itself.
pub const DEFAULT_PROFILE: &str = "crio-default";

/// How long `apparmor_parser` may take to compile and load the profile.
const PARSER_DEADLINE: Duration = Duration::from_secs(30);

/// Where the kernel lists the loaded profiles (`NAME (MODE)` lines).
const PROFILES_FILE: &str = "/sys/kernel/security/apparmor/profiles";

/// Where `apparmor_parser` is looked for after `PATH`.
const PARSER_DIRS: [&str; 2] = ["/sbin", "/usr/sbin"];

/// The text of the `crio-default` profile.
///
/// Containers may use the network, their capabilities (the bounding set
/// limits them), any file of theirs and umount; they may signal and trace
/// only processes under the same profile and receive signals from
/// unconfined processes (the runtime, the shim, the kubelet). Denied: every
/// mount; writes to the kernel's global settings under `/proc/sys` (only
/// the IPC ones, `kernel.shm*`, `kernel.msg*`, `kernel.sem`, which the
/// kernel keeps per IPC namespace, stay writable), to files directly under
/// `/proc` and to its non-process directories; any access to kernel memory
/// and `/proc/sysrq-trigger`, to firmware, security modules and the
/// powercap energy counters under `/sys`; writes under `/sys` except the
/// cgroup tree.
pub fn profile() -> String {
    let name = DEFAULT_PROFILE;
    format!(
        r#"# {name}: the default AppArmor profile of crio-rs containers
# (crio.runtime.apparmor_profile), generated and loaded by the daemon.
# Self-contained: no abstraction or tunable of /etc/apparmor.d is needed.

profile {name} flags=(attach_disconnected,mediate_deleted) {{
  # What a container may do.
  network,
  capability,
  file,
  umount,
  signal (send, receive) peer={name},
  signal (receive) peer=unconfined,
  ptrace (trace, read, tracedby, readby) peer={name},

  # No mount of any kind.
  deny mount,

  # /proc: nothing writable directly under it nor in its non-process
  # directories; kernel memory and the SysRq trigger out of reach.
  deny /proc/* w,
  deny /proc/{{acpi,bus,driver,fs,irq,scsi,sysvipc,tty}}/** w,
  deny /proc/{{kcore,kmem,mem,sysrq-trigger}} rwklx,

  # /proc/sys: the kernel's global settings are read-only; only the IPC
  # settings (kernel.shm*, kernel.msg*, kernel.sem), kept per IPC
  # namespace, stay writable.
  deny /proc/sys/[^k]*/** w,
  deny /proc/sys/kernel/*/** w,
  deny /proc/sys/kernel/[^ms]* w,
  deny /proc/sys/kernel/m[^s]* w,
  deny /proc/sys/kernel/ms[^g]* w,
  deny /proc/sys/kernel/s[^eh]* w,
  deny /proc/sys/kernel/se[^m]* w,
  deny /proc/sys/kernel/sh[^m]* w,

  # /sys: writable only in the cgroup tree; firmware, security modules
  # and the energy counters (a side channel) not even readable.
  deny /sys/{{block,bus,class,dev,devices,hypervisor,kernel,module,power}}/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
}}
"#
    )
}

/// Whether the daemon must load its profile: AppArmor is enabled, the
/// configured default is `crio-default`, and `loaded` (the kernel's list
/// of profiles) does not hold it yet.
fn needs_load(enabled: bool, configured: &str, loaded: &str) -> bool {
    enabled
        && configured == DEFAULT_PROFILE
        && !crio_spec::lsm::apparmor_loaded(loaded, DEFAULT_PROFILE)
}

/// `apparmor_parser` on `path_env`, else in `/sbin` or `/usr/sbin`.
fn find_parser(path_env: &str) -> Option<PathBuf> {
    crio_config::find_on_path("apparmor_parser", path_env)
        .or_else(|| crio_config::find_on_path("apparmor_parser", &PARSER_DIRS.join(":")))
}

/// Why the profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No `apparmor_parser` to load it with.
    #[error(
        "apparmor_parser not found on PATH, in /sbin or /usr/sbin (install the apparmor package)"
    )]
    NoParser,
    /// The profile file could not be written.
    #[error("write {}: {source}", path.display())]
    Write {
        /// The profile file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The parser could not be started.
    #[error("run {}: {source}", parser.display())]
    Spawn {
        /// The parser.
        parser: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The parser refused the profile or the kernel did.
    #[error("{} {status}: {message}", parser.display())]
    Refused {
        /// The parser.
        parser: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its error output (else its output), trimmed.
        message: String,
    },
    /// The parser was still running at its deadline (it was killed).
    #[error("{} still running after {deadline:?}: killed", parser.display())]
    Deadline {
        /// The parser.
        parser: PathBuf,
        /// The deadline.
        deadline: Duration,
    },
}

/// Writes the profile to `file` and loads it with `parser`:
/// `--replace` (a profile of that name loaded meanwhile is replaced, not
/// an error) and `--skip-cache` (the text is generated on every start and
/// compiles in well under a second: neither a stale cache is read nor
/// the system's cache in /var/cache/apparmor written).
async fn load(parser: &Path, file: &Path, deadline: Duration) -> Result<(), LoadError> {
    tokio::fs::write(file, profile())
        .await
        .map_err(|source| LoadError::Write {
            path: file.to_path_buf(),
            source,
        })?;
    let mut cmd = tokio::process::Command::new(parser);
    cmd.args(["--replace", "--skip-cache"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parser = parser.to_path_buf();
    let output = match tokio::time::timeout(deadline, cmd.output()).await {
        Err(_) => return Err(LoadError::Deadline { parser, deadline }),
        Ok(Err(source)) => return Err(LoadError::Spawn { parser, source }),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(());
    }
    let text = if output.stderr.is_empty() {
        &output.stdout
    } else {
        &output.stderr
    };
    Err(LoadError::Refused {
        parser,
        status: output.status,
        message: String::from_utf8_lossy(text)
            .trim()
            .chars()
            .take(500)
            .collect(),
    })
}

/// What the daemon sees of the host's AppArmor.
struct Host {
    enabled: bool,
    /// The kernel's list of loaded profiles.
    profiles: PathBuf,
    parser: Option<PathBuf>,
    deadline: Duration,
}

impl Host {
    fn detect() -> Self {
        Self {
            enabled: crio_spec::lsm::Lsm::detect(Path::new("/sys")).apparmor,
            profiles: PROFILES_FILE.into(),
            parser: find_parser(&std::env::var("PATH").unwrap_or_default()),
            deadline: PARSER_DEADLINE,
        }
    }
}

/// The daemon's `crio-default`: loads it where needed and remembers why
/// it could not, for the Status.
#[derive(Debug, Default)]
pub struct DefaultProfile {
    failure: parking_lot::Mutex<Option<String>>,
}

impl DefaultProfile {
    /// Loads `crio-default` when AppArmor is enabled, `configured` (the
    /// `apparmor_profile` option) names it and the kernel lacks it; the
    /// profile is written to `runroot/apparmor/crio-default`. A failure is
    /// logged and kept; the daemon runs on, and containers that would get
    /// the profile are refused until it is loaded.
    pub async fn ensure(&self, configured: &str, runroot: &Path) {
        self.ensure_on(&Host::detect(), configured, runroot).await;
    }

    async fn ensure_on(&self, host: &Host, configured: &str, runroot: &Path) {
        let loaded = tokio::fs::read_to_string(&host.profiles)
            .await
            .unwrap_or_default();
        if !needs_load(host.enabled, configured, &loaded) {
            *self.failure.lock() = None;
            return;
        }
        let dir = runroot.join("apparmor");
        let result = match &host.parser {
            None => Err(LoadError::NoParser),
            Some(parser) => match tokio::fs::create_dir_all(&dir).await {
                Err(source) => Err(LoadError::Write { path: dir, source }),
                Ok(()) => load(parser, &dir.join(DEFAULT_PROFILE), host.deadline).await,
            },
        };
        match result {
            Ok(()) => {
                tracing::info!("AppArmor profile {DEFAULT_PROFILE} loaded");
                *self.failure.lock() = None;
            }
            Err(e) => {
                tracing::error!(
                    "AppArmor profile {DEFAULT_PROFILE} could not be loaded: {e}; containers that would run under it are refused"
                );
                *self.failure.lock() = Some(e.to_string());
            }
        }
    }

    /// Writes why the profile could not be loaded, if it could not, into
    /// the security modules' report (its `apparmor` entry).
    pub fn annotate(&self, report: &mut serde_json::Value) {
        if let Some(why) = &*self.failure.lock() {
            report["apparmor"] =
                format!("enabled, but {DEFAULT_PROFILE} could not be loaded: {why}").into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(path: &Path, body: &str) {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A host `name` with AppArmor enabled, `loaded` as its profile list
    /// and as parser a script of `parser`'s body, if any, in `dir/name`.
    fn host(dir: &Path, name: &str, loaded: &str, parser: Option<&str>) -> Host {
        let dir = dir.join(name);
        std::fs::create_dir(&dir).unwrap();
        let profiles = dir.join("profiles");
        std::fs::write(&profiles, loaded).unwrap();
        let parser = parser.map(|body| {
            let path = dir.join("apparmor_parser");
            script(&path, body);
            path
        });
        Host {
            enabled: true,
            profiles,
            parser,
            deadline: Duration::from_secs(10),
        }
    }

    fn status_of(profile: &DefaultProfile) -> String {
        let mut report = serde_json::json!({ "apparmor": "enabled" });
        profile.annotate(&mut report);
        report["apparmor"].as_str().unwrap().to_string()
    }

    #[test]
    fn profile_names_itself_and_denies_what_a_container_must_not_do() {
        let text = profile();
        assert!(
            text.contains("profile crio-default flags=(attach_disconnected,mediate_deleted) {")
        );
        assert!(!text.contains("#include"), "self-contained");
        for rule in [
            "deny mount,",
            "deny /proc/{kcore,kmem,mem,sysrq-trigger} rwklx,",
            "deny /proc/sys/[^k]*/** w,",
            "deny /proc/sys/kernel/*/** w,",
            "deny /sys/firmware/** rwklx,",
            "deny /sys/kernel/security/** rwklx,",
            "signal (receive) peer=unconfined,",
            "ptrace (trace, read, tracedby, readby) peer=crio-default,",
        ] {
            assert!(text.lines().any(|l| l.trim() == rule), "{rule} missing");
        }
        // Braces balance and the profile block closes last.
        let mut depth = 0i32;
        for c in text.chars() {
            depth += match c {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            assert!(depth >= 0);
        }
        assert_eq!(depth, 0);
        assert_eq!(text.trim_end().lines().last(), Some("}"));
    }

    #[test]
    fn loads_only_the_missing_crio_default_where_apparmor_is_enabled() {
        let loaded = "crio-default (enforce)\n/usr/bin/man (enforce)\n";
        let other = "/usr/bin/man (enforce)\n";
        for (enabled, configured, profiles, load) in [
            (true, "crio-default", other, true),
            (true, "crio-default", "", true),
            (true, "crio-default", loaded, false),
            (true, "my-profile", other, false),
            (false, "crio-default", "", false),
            (false, "my-profile", "", false),
        ] {
            assert_eq!(
                needs_load(enabled, configured, profiles),
                load,
                "{enabled} {configured} {profiles:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_parser_gets_the_profile_file_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let runroot = dir.path().join("run");
        let record = dir.path().join("record");
        let body = format!(
            "echo \"$@\" > {0}/args; cat \"$3\" > {0}/got",
            record.display()
        );
        std::fs::create_dir(&record).unwrap();
        let missing = host(
            dir.path(),
            "without",
            "/usr/bin/man (enforce)\n",
            Some(&body),
        );
        let profile = DefaultProfile::default();
        profile.ensure_on(&missing, DEFAULT_PROFILE, &runroot).await;
        let file = runroot.join("apparmor/crio-default");
        let args = std::fs::read_to_string(record.join("args")).unwrap();
        assert_eq!(
            args.trim(),
            format!("--replace --skip-cache {}", file.display())
        );
        assert_eq!(
            std::fs::read_to_string(record.join("got")).unwrap(),
            super::profile()
        );
        assert_eq!(status_of(&profile), "enabled");

        // Loaded already, or another default: the parser is not run.
        std::fs::remove_file(record.join("args")).unwrap();
        let loaded = host(dir.path(), "with", "crio-default (enforce)\n", Some(&body));
        profile.ensure_on(&loaded, DEFAULT_PROFILE, &runroot).await;
        profile.ensure_on(&missing, "my-profile", &runroot).await;
        assert!(!record.join("args").exists());
    }

    #[tokio::test]
    async fn a_failure_is_reported_in_the_status_until_a_load_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let runroot = dir.path().join("run");
        let profile = DefaultProfile::default();

        let missing = host(dir.path(), "missing", "", None);
        profile.ensure_on(&missing, DEFAULT_PROFILE, &runroot).await;
        let why = status_of(&profile);
        assert!(
            why.starts_with(
                "enabled, but crio-default could not be loaded: apparmor_parser not found"
            ),
            "{why}"
        );
        assert!(why.contains("apparmor package"), "{why}");

        let refused = host(
            dir.path(),
            "refused",
            "",
            Some("echo 'AppArmor parser error at line 9: syntax error' >&2; exit 1"),
        );
        profile.ensure_on(&refused, DEFAULT_PROFILE, &runroot).await;
        let why = status_of(&profile);
        assert!(
            why.contains("AppArmor parser error at line 9: syntax error"),
            "{why}"
        );
        assert!(why.contains("exit status: 1"), "{why}");

        let mut hangs = host(dir.path(), "hangs", "", Some("exec sleep 60"));
        hangs.deadline = Duration::from_millis(300);
        profile.ensure_on(&hangs, DEFAULT_PROFILE, &runroot).await;
        let why = status_of(&profile);
        assert!(why.contains("still running after 300ms: killed"), "{why}");

        // Another default profile is the operator's: nothing to report.
        profile.ensure_on(&hangs, "my-profile", &runroot).await;
        assert_eq!(status_of(&profile), "enabled");

        profile.ensure_on(&refused, DEFAULT_PROFILE, &runroot).await;
        assert!(status_of(&profile).contains("syntax error"));
        let fixed = host(dir.path(), "fixed", "", Some("exit 0"));
        profile.ensure_on(&fixed, DEFAULT_PROFILE, &runroot).await;
        assert_eq!(status_of(&profile), "enabled");
    }
}
