//! The container's process: argv, environment, user, working directory,
//! capabilities, rlimits and security labels.

use std::str::FromStr;

use crio_api::cri::{ContainerConfig, LinuxContainerSecurityContext};
use oci_spec::runtime::Capabilities;

use crate::oci::{Capability, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process, User};
use crate::{Host, ImageConfig, Input, SpecError, image, invalid, lsm, user};
use oci_spec::runtime::PosixRlimitBuilder;

fn normalise_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).to_string()
}

/// The capability set: defaults plus adds minus drops (`ALL` in either),
/// every capability the daemon holds when privileged; never beyond the
/// daemon's own bounding set.
pub fn capabilities(
    config: &ContainerConfig,
    defaults: &[String],
    bounding: &[String],
) -> Result<Vec<String>, SpecError> {
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let known = crio_config::KNOWN_CAPABILITIES;
    let bound: Vec<String> = bounding.iter().map(|c| normalise_cap(c)).collect();
    if sc.is_some_and(|s| s.privileged) {
        return Ok(bound.iter().map(|c| format!("CAP_{c}")).collect());
    }
    let mut caps: Vec<String> = defaults.iter().map(|c| normalise_cap(c)).collect();
    if let Some(c) = sc.and_then(|s| s.capabilities.as_ref()) {
        for (field, list) in [
            ("add_capabilities", &c.add_capabilities),
            ("drop_capabilities", &c.drop_capabilities),
        ] {
            for cap in list {
                let n = normalise_cap(cap);
                if n != "ALL" && !known.contains(&n.as_str()) {
                    return Err(invalid(
                        &format!("config.linux.security_context.capabilities.{field}"),
                        format!("{cap:?} is not a capability"),
                    ));
                }
            }
        }
        let drops: Vec<String> = c
            .drop_capabilities
            .iter()
            .map(|c| normalise_cap(c))
            .collect();
        if drops.iter().any(|d| d == "ALL") {
            caps.clear();
        } else {
            caps.retain(|c| !drops.contains(c));
        }
        for add in c.add_capabilities.iter().map(|c| normalise_cap(c)) {
            if add == "ALL" {
                caps = known.iter().map(|k| k.to_string()).collect();
            } else if !caps.contains(&add) {
                caps.push(add);
            }
        }
    }
    caps.retain(|c| bound.contains(c));
    caps.sort_by_key(|c| known.iter().position(|k| k == c));
    caps.dedup();
    Ok(caps.into_iter().map(|c| format!("CAP_{c}")).collect())
}

/// The process's user: run_as_username, run_as_user (and run_as_group),
/// else the image's `User`; supplementary groups from /etc/group plus the
/// requested ones.
pub fn process_user(
    config: &ContainerConfig,
    image: &ImageConfig,
    host: &Host,
) -> Result<(User, Option<String>), SpecError> {
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    if sc.run_as_group.is_some() && sc.run_as_username.is_empty() && sc.run_as_user.is_none() {
        return Err(invalid(
            "config.linux.security_context.run_as_group",
            "is set without run_as_user or run_as_username",
        ));
    }
    let image_user = image::user(image);
    let spec = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(u) = &sc.run_as_user {
        if u.value < 0 || u.value > i64::from(u32::MAX) {
            return Err(invalid(
                "config.linux.security_context.run_as_user",
                format!("{} is not a uid", u.value),
            ));
        }
        u.value.to_string()
    } else {
        image_user.to_string()
    };
    let field = if sc.run_as_username.is_empty() && sc.run_as_user.is_none() {
        "image config User"
    } else {
        "config.linux.security_context.run_as_user"
    };
    let r = user::resolve(&spec, &host.passwd, &host.group)
        .map_err(|e| invalid(field, e.to_string()))?;
    let mut gid = r.gid;
    if let Some(g) = &sc.run_as_group {
        if g.value < 0 || g.value > i64::from(u32::MAX) {
            return Err(invalid(
                "config.linux.security_context.run_as_group",
                format!("{} is not a gid", g.value),
            ));
        }
        gid = g.value as u32;
    }
    // SupplementalGroupsPolicy Strict (1) ignores the image's group file.
    let mut groups: Vec<u32> = if sc.supplemental_groups_policy == 1 {
        Vec::new()
    } else {
        r.groups
    };
    for g in &sc.supplemental_groups {
        let g = u32::try_from(*g).map_err(|_| {
            invalid(
                "config.linux.security_context.supplemental_groups",
                format!("{g} is not a gid"),
            )
        })?;
        groups.push(g);
    }
    groups.retain(|g| *g != gid);
    groups.sort_unstable();
    groups.dedup();
    let mut user = User::default();
    user.set_uid(r.uid)
        .set_gid(gid)
        .set_additional_gids((!groups.is_empty()).then_some(groups));
    Ok((user, r.home))
}

/// The OCI capability set of `caps` (`CAP_X` names).
fn capability_set(caps: &[String]) -> Result<Capabilities, SpecError> {
    caps.iter()
        .map(|c| {
            Capability::from_str(c.strip_prefix("CAP_").unwrap_or(c))
                .map_err(|_| invalid("capabilities", format!("{c:?} is not a capability")))
        })
        .collect()
}

/// The process's rlimits: `default_ulimits` (a negative limit is unlimited).
fn rlimits(ulimits: &[(String, i64, i64)]) -> Result<Vec<PosixRlimit>, SpecError> {
    let unlimited = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
    ulimits
        .iter()
        .map(|(name, soft, hard)| {
            let kind = format!("RLIMIT_{}", name.to_ascii_uppercase());
            let typ = PosixRlimitType::from_str(&kind)
                .map_err(|_| invalid("default_ulimits", format!("{name:?} is not a ulimit")))?;
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(unlimited(*soft))
                .hard(unlimited(*hard))
                .build()
                .map_err(|e| invalid("default_ulimits", e.to_string()))
        })
        .collect()
}

/// The process of the container: `caps` are its capabilities, `sc` its
/// security context, `hostname` the pod's.
pub(crate) fn process(
    input: &Input,
    sc: &LinuxContainerSecurityContext,
    caps: &[String],
    hostname: &str,
) -> Result<Process, SpecError> {
    let config = input.config;
    let (user, home) = process_user(config, input.image, input.host)?;
    let mut env = image::environment(config, input.image, &input.defaults.env, hostname);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home.unwrap_or_else(|| "/".into())));
    }
    let cwd = if config.working_dir.is_empty() {
        image::working_dir(input.image)
    } else {
        config.working_dir.clone()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(
            "config.working_dir",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    let oom = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map_or(0, |r| r.oom_score_adj)
        .max(input.host.min_oom_score_adj)
        .min(1000);
    let apparmor = lsm::apparmor_profile(
        sc,
        input.host.lsm.apparmor,
        &input.defaults.apparmor_profile,
    )
    .map_err(|e| invalid("config.linux.security_context.apparmor", e.to_string()))?;
    let selinux = lsm::selinux_labels(sc.selinux_options.as_ref(), input.host.lsm.selinux);
    let set = capability_set(caps)?;
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(Some(Capabilities::new()))
        .set_ambient(Some(Capabilities::new()));
    let rlimits = rlimits(&input.defaults.ulimits)?;
    // Process::default() is youki's process (sh, TERM, three capabilities,
    // an rlimit): every field it fills is set here.
    let mut process = Process::default();
    process
        .set_terminal(Some(config.tty))
        .set_user(user)
        .set_args(Some(image::argv(config, input.image)?))
        .set_env(Some(env))
        .set_cwd(cwd.into())
        .set_capabilities(Some(capabilities))
        .set_rlimits((!rlimits.is_empty()).then_some(rlimits))
        .set_no_new_privileges(Some(sc.no_new_privs))
        .set_oom_score_adj(Some(i32::try_from(oom).unwrap_or(i32::MIN)))
        .set_apparmor_profile(apparmor)
        .set_selinux_label(selinux.map(|(process, _)| process))
        .set_console_size(None)
        .set_command_line(None)
        .set_scheduler(None)
        .set_io_priority(None)
        .set_exec_cpu_affinity(None);
    Ok(process)
}
