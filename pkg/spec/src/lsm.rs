//! Linux security modules: AppArmor profiles and SELinux labels for a
//! container, applied where the host has the module and reported where it
//! does not.

use std::path::Path;

use crio_api::cri::{LinuxContainerSecurityContext, SeLinuxOption, security_profile::ProfileType};

/// What the host's security modules offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lsm {
    /// AppArmor is enabled.
    pub apparmor: bool,
    /// SELinux is enabled.
    pub selinux: bool,
}

impl Lsm {
    /// Reads the host's state under `sys` (`/sys`).
    pub fn detect(sys: &Path) -> Self {
        let apparmor = std::fs::read_to_string(sys.join("module/apparmor/parameters/enabled"))
            .is_ok_and(|t| t.trim() == "Y");
        let selinux = sys.join("fs/selinux/enforce").exists();
        Self { apparmor, selinux }
    }

    /// How each module stands, for the Status info and the start-up log;
    /// `selinux_wanted` is the `selinux` option.
    pub fn report(&self, selinux_wanted: bool) -> serde_json::Value {
        let apparmor = if self.apparmor {
            "enabled"
        } else {
            "unavailable: AppArmor is not enabled on this host; profiles are not applied"
        };
        let selinux = match (selinux_wanted, self.selinux) {
            (true, true) => "enabled",
            (true, false) => {
                "unavailable: selinux = true but SELinux is not enabled on this host; labels are not applied"
            }
            (false, _) => "disabled by the selinux option",
        };
        serde_json::json!({ "apparmor": apparmor, "selinux": selinux })
    }
}

/// What a container asked of AppArmor: the profile type and, for Localhost,
/// its name; from `apparmor`, else the older `apparmor_profile` string
/// (`runtime/default`, `localhost/NAME`, `unconfined`), which kubelets before
/// 1.30 send alone.
#[allow(deprecated)]
fn requested_apparmor(sc: &LinuxContainerSecurityContext) -> Option<(ProfileType, String)> {
    if let Some(p) = &sc.apparmor {
        let kind = ProfileType::try_from(p.profile_type).unwrap_or(ProfileType::RuntimeDefault);
        let name = p.localhost_ref.trim_start_matches("localhost/").to_string();
        return Some((kind, name));
    }
    match sc.apparmor_profile.as_str() {
        "" => None,
        "unconfined" => Some((ProfileType::Unconfined, String::new())),
        "runtime/default" => Some((ProfileType::RuntimeDefault, String::new())),
        other => Some((
            ProfileType::Localhost,
            other.trim_start_matches("localhost/").to_string(),
        )),
    }
}

/// A Localhost AppArmor profile was asked for without its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Localhost profile needs localhost_ref")]
pub struct NoProfileName;

/// The AppArmor profile of a container: None where AppArmor is off, and
/// for a privileged container that asked for nothing; `default_profile`
/// (`apparmor_profile`) for RuntimeDefault or no request.
pub fn apparmor_profile(
    sc: &LinuxContainerSecurityContext,
    enabled: bool,
    default_profile: &str,
) -> Result<Option<String>, NoProfileName> {
    if !enabled {
        return Ok(None);
    }
    match requested_apparmor(sc) {
        Some((ProfileType::Unconfined, _)) => Ok(Some("unconfined".into())),
        Some((ProfileType::Localhost, name)) if name.is_empty() => Err(NoProfileName),
        Some((ProfileType::Localhost, name)) => Ok(Some(name)),
        None if sc.privileged => Ok(None),
        _ => Ok(Some(default_profile.to_string())),
    }
}

/// Whether a security option was asked for that the host cannot apply:
/// the names of the modules, for a warning.
pub fn unapplied(sc: &LinuxContainerSecurityContext, host: Lsm) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !host.apparmor
        && requested_apparmor(sc).is_some_and(|(kind, _)| kind == ProfileType::Localhost)
    {
        out.push("AppArmor");
    }
    if !host.selinux
        && sc
            .selinux_options
            .as_ref()
            .is_some_and(|o| *o != SeLinuxOption::default())
    {
        out.push("SELinux");
    }
    out
}

/// Whether profile `name` is loaded, from the text of
/// `/sys/kernel/security/apparmor/profiles` (`NAME (MODE)` lines).
pub fn apparmor_loaded(profiles: &str, name: &str) -> bool {
    profiles
        .lines()
        .any(|l| l.rsplit_once(" (").is_some_and(|(n, _)| n == name))
}

/// The SELinux process and mount labels (`user:role:type:level`) from the
/// request's options over the defaults `system_u:system_r:container_t:s0`
/// and `system_u:object_r:container_file_t:s0`; None where SELinux is off.
pub fn selinux_labels(opts: Option<&SeLinuxOption>, enabled: bool) -> Option<(String, String)> {
    if !enabled {
        return None;
    }
    let o = opts.cloned().unwrap_or_default();
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    let (user, level) = (or(&o.user, "system_u"), or(&o.level, "s0"));
    let process = format!(
        "{user}:{}:{}:{level}",
        or(&o.role, "system_r"),
        or(&o.r#type, "container_t")
    );
    let mount = format!("{user}:object_r:container_file_t:{level}");
    Some((process, mount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crio_api::cri::SecurityProfile;

    fn sc(kind: ProfileType, name: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: kind as i32,
                localhost_ref: name.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    #[allow(deprecated)]
    fn apparmor_profiles_by_request() {
        let none = LinuxContainerSecurityContext::default();
        assert_eq!(
            apparmor_profile(&none, true, "crio-default"),
            Ok(Some("crio-default".into()))
        );
        assert_eq!(apparmor_profile(&none, false, "crio-default"), Ok(None));
        let local = sc(ProfileType::Localhost, "localhost/mine");
        assert_eq!(apparmor_profile(&local, true, "d"), Ok(Some("mine".into())));
        assert!(apparmor_profile(&sc(ProfileType::Localhost, ""), true, "d").is_err());
        assert_eq!(
            apparmor_profile(&sc(ProfileType::Unconfined, ""), true, "d"),
            Ok(Some("unconfined".into()))
        );
        let privileged = LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        assert_eq!(apparmor_profile(&privileged, true, "d"), Ok(None));
        let old = LinuxContainerSecurityContext {
            apparmor_profile: "localhost/legacy".into(),
            ..Default::default()
        };
        assert_eq!(apparmor_profile(&old, true, "d"), Ok(Some("legacy".into())));
        let off = Lsm::default();
        assert_eq!(unapplied(&local, off), ["AppArmor"]);
        assert!(unapplied(&none, off).is_empty());
        assert!(
            unapplied(
                &local,
                Lsm {
                    apparmor: true,
                    selinux: false
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn loaded_profiles_and_selinux_labels() {
        let profiles = "crio-default (enforce)\n/usr/bin/man (complain)\n";
        assert!(apparmor_loaded(profiles, "crio-default"));
        assert!(apparmor_loaded(profiles, "/usr/bin/man"));
        assert!(!apparmor_loaded(profiles, "crio"));
        assert_eq!(selinux_labels(None, false), None);
        assert_eq!(
            selinux_labels(None, true),
            Some((
                "system_u:system_r:container_t:s0".into(),
                "system_u:object_r:container_file_t:s0".into()
            ))
        );
        let opts = SeLinuxOption {
            level: "s0:c1,c2".into(),
            r#type: "spc_t".into(),
            ..Default::default()
        };
        assert_eq!(
            selinux_labels(Some(&opts), true).unwrap().0,
            "system_u:system_r:spc_t:s0:c1,c2"
        );
        let sc = LinuxContainerSecurityContext {
            selinux_options: Some(opts),
            ..Default::default()
        };
        assert_eq!(unapplied(&sc, Lsm::default()), ["SELinux"]);
        let report = Lsm::default().report(true);
        assert!(
            report["apparmor"]
                .as_str()
                .unwrap()
                .starts_with("unavailable")
        );
        assert!(
            report["selinux"]
                .as_str()
                .unwrap()
                .starts_with("unavailable")
        );
    }
}
