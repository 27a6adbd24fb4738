//! Seccomp: the built-in RuntimeDefault profile and the reading of
//! Localhost profiles (Docker/containers JSON) into the OCI form.

use serde_json::{Value, json};

/// System calls the built-in profile refuses with EPERM: kernel modules,
/// keyrings, namespaces and mounts, clocks, reboot, tracing of other
/// processes, BPF and perf, and other calls containers have no business
/// making. Everything else is allowed.
pub const BLOCKED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// The RuntimeDefault profile in OCI form.
pub fn default_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [{"names": BLOCKED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    })
}

/// A profile file in the Docker/containers format as the OCI `seccomp`
/// object: `defaultAction`, `architectures` (from `archMap` too),
/// `syscalls` with `names` (or the old single `name`), `action`, `errnoRet`
/// and `args`.
pub fn to_oci(profile: &Value) -> Result<Value, String> {
    let default = profile["defaultAction"]
        .as_str()
        .filter(|a| a.starts_with("SCMP_ACT_"))
        .ok_or("no valid defaultAction")?;
    let mut arches: Vec<Value> = profile["architectures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for m in profile["archMap"].as_array().into_iter().flatten() {
        if let Some(a) = m.get("architecture") {
            arches.push(a.clone());
            arches.extend(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    let mut syscalls = Vec::new();
    for (i, s) in profile["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut names: Vec<Value> = s["names"].as_array().cloned().unwrap_or_default();
        if let Some(n) = s.get("name") {
            names.push(n.clone());
        }
        let action = s["action"]
            .as_str()
            .filter(|a| a.starts_with("SCMP_ACT_"))
            .ok_or(format!("syscalls[{i}]: no valid action"))?;
        if names.is_empty() {
            return Err(format!("syscalls[{i}]: no names"));
        }
        let mut rule = json!({"names": names, "action": action});
        if let Some(e) = s.get("errnoRet") {
            rule["errnoRet"] = e.clone();
        }
        if let Some(a) = s.get("args").filter(|a| !a.is_null()) {
            rule["args"] = a.clone();
        }
        syscalls.push(rule);
    }
    Ok(json!({"defaultAction": default, "architectures": arches, "syscalls": syscalls}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_blocks_mount_and_unshare() {
        let p = default_profile();
        let names = p["syscalls"][0]["names"].as_array().unwrap();
        assert!(names.iter().any(|n| n == "mount") && names.iter().any(|n| n == "unshare"));
        assert_eq!(p["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn docker_format_converts() {
        let docker = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}, {"name": "chmod", "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        });
        let oci = to_oci(&docker).unwrap();
        assert_eq!(
            oci["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(oci["syscalls"][1]["names"], json!(["chmod"]));
        assert_eq!(oci["syscalls"][1]["errnoRet"], 38);
        assert!(
            to_oci(&json!({"syscalls": []}))
                .unwrap_err()
                .contains("defaultAction")
        );
        assert!(
            to_oci(&json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"]}]}))
                .unwrap_err()
                .contains("syscalls[0]")
        );
    }
}
