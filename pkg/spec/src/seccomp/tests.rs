//! Profiles parsed, checked and resolved for a container.

use serde_json::{Value, json};

use super::*;

const AMD64: Platform = Platform {
    arch: "amd64",
    seccomp_arch: "SCMP_ARCH_X86_64",
    kernel: KernelVersion(6, 1),
};

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

/// The OCI filter of `profile`, as JSON.
fn resolve(profile: &Profile, caps: &[String], platform: &Platform) -> Value {
    serde_json::to_value(profile.resolve(caps, platform)).unwrap()
}

#[test]
fn every_known_name_is_an_oci_spec_value() {
    let json = |v: Result<Value, _>| v.unwrap().as_str().unwrap().to_string();
    for name in Arch::KNOWN {
        let arch = Arch::try_from(name.to_string()).unwrap();
        assert_eq!(json(serde_json::to_value(arch.0)), *name);
    }
    for name in Action::KNOWN {
        let action = Action::try_from(name.to_string()).unwrap();
        assert_eq!(json(serde_json::to_value(action.0)), *name);
    }
    for name in Op::KNOWN {
        let op = Op::try_from(name.to_string()).unwrap();
        assert_eq!(json(serde_json::to_value(op.0)), *name);
    }
    // oci-spec knows it; the profiles here do not.
    assert!(Arch::try_from("SCMP_ARCH_NATIVE".to_string()).is_err());
}

/// The rules of `profile` that name `name`.
fn rules_for<'a>(profile: &'a Value, name: &str) -> Vec<&'a Value> {
    profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
        .collect()
}

#[test]
fn built_in_profile_is_an_allow_list() {
    let p = resolve(Profile::runtime_default(), &caps(&["CAP_CHOWN"]), &AMD64);
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(p["defaultErrnoRet"], 1);
    assert_eq!(
        p["architectures"],
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    );
    assert!(rules_for(&p, "io_uring_setup").is_empty());
    assert!(rules_for(&p, "unshare").is_empty());
    // clone: only without namespace flags; clone3: ENOSYS.
    let clone = rules_for(&p, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    assert_eq!(clone[0]["args"][0]["value"], 0x7e02_0000u64);
    let clone3 = rules_for(&p, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(
        (&clone3[0]["action"], &clone3[0]["errnoRet"]),
        (&json!("SCMP_ACT_ERRNO"), &json!(38))
    );
    // Architecture rules: only this one's.
    assert_eq!(rules_for(&p, "arch_prctl").len(), 1);
    assert!(rules_for(&p, "cacheflush").is_empty());
    // Kernel rules: ptrace from 4.8 on.
    assert_eq!(rules_for(&p, "ptrace").len(), 1);
    let old = Platform {
        kernel: KernelVersion(4, 4),
        ..AMD64
    };
    let p = resolve(Profile::runtime_default(), &[], &old);
    assert!(rules_for(&p, "ptrace").is_empty());
}

#[test]
fn capability_rules_follow_the_capability_set() {
    let profile = Profile::runtime_default();
    let admin = resolve(profile, &caps(&["CAP_SYS_ADMIN"]), &AMD64);
    let clone = rules_for(&admin, "clone");
    assert_eq!(clone.len(), 1);
    assert!(
        clone[0].get("args").is_none(),
        "unconditional with SYS_ADMIN"
    );
    assert_eq!(rules_for(&admin, "clone3")[0]["action"], "SCMP_ACT_ALLOW");
    assert_eq!(rules_for(&admin, "mount").len(), 1);
    assert!(rules_for(&admin, "init_module").is_empty());
    let module = resolve(profile, &caps(&["CAP_SYS_MODULE"]), &AMD64);
    assert_eq!(rules_for(&module, "init_module").len(), 1);
    assert!(rules_for(&module, "mount").is_empty());
}

#[test]
fn docker_format_converts() {
    let docker = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null},
            {"name": "chmod", "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "args": [{"index": 1, "value": 2048, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["sys_admin"]}}
        ]
    }"#;
    let profile = Profile::parse(docker).unwrap();
    let oci = resolve(&profile, &[], &AMD64);
    assert_eq!(
        oci["architectures"],
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    );
    assert!(oci.get("defaultErrnoRet").is_none());
    assert_eq!(oci["syscalls"].as_array().unwrap().len(), 2);
    assert_eq!(
        oci["syscalls"][1],
        json!({"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
               "args": [{"index": 1, "value": 2048, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
    );
    let admin = resolve(&profile, &caps(&["CAP_SYS_ADMIN"]), &AMD64);
    assert_eq!(admin["syscalls"][2]["names"], json!(["mount"]));
}

#[test]
fn invalid_profiles_say_what_is_wrong() {
    let err = |text: &str| Profile::parse(text).unwrap_err().to_string();
    assert!(err(r#"{"syscalls": []}"#).contains("defaultAction"));
    assert!(
        err(r#"{"defaultAction": "SCMP_ACT_ALOW"}"#)
            .contains("\"SCMP_ACT_ALOW\" is not a seccomp action")
    );
    let rule = |r: &str| {
        err(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{r}]}}"#
        ))
    };
    assert!(rule(r#"{"names": ["x"]}"#).contains("action"));
    assert!(rule(r#"{"names": [], "action": "SCMP_ACT_LOG"}"#).contains("names no system call"));
    assert!(
        rule(r#"{"names": ["a b"], "action": "SCMP_ACT_LOG"}"#).contains("not a system call name")
    );
    assert!(
        rule(r#"{"names": ["read"], "action": "SCMP_ACT_LOG", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}"#)
            .contains("argument index 6")
    );
    assert!(
        rule(r#"{"names": ["read"], "action": "SCMP_ACT_LOG", "args": [{"index": 0, "value": 1, "op": "EQ"}]}"#)
            .contains("not a seccomp comparison")
    );
    assert!(
        rule(r#"{"names": ["read"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "four"}}"#)
            .contains("not a kernel version")
    );
    assert!(
        err(r#"{"defaultAction": "SCMP_ACT_LOG", "architectures": ["x86"]}"#)
            .contains("architecture")
    );
}

#[test]
fn the_configured_file_is_read_once_and_named_in_errors() {
    assert!(Profile::configured(Path::new("")).unwrap().is_none());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_LOG"}"#).unwrap();
    let p = Profile::configured(&path).unwrap().unwrap();
    assert_eq!(resolve(&p, &[], &AMD64)["defaultAction"], "SCMP_ACT_LOG");
    std::fs::write(&path, "{").unwrap();
    let e = Profile::configured(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("seccomp profile {}: ", path.display())),
        "{e}"
    );
    let missing = dir.path().join("missing.json");
    let e = Profile::configured(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn kernel_versions_parse_from_release_strings() {
    let v = |s: &str| KernelVersion::try_from(s.to_string());
    assert_eq!(v("6.18.44-fc-v657"), Ok(KernelVersion(6, 18)));
    assert_eq!(v("4.8"), Ok(KernelVersion(4, 8)));
    assert!(v("4").is_err() && v("").is_err());
    assert!(KernelVersion(4, 10) > KernelVersion(4, 8));
}
