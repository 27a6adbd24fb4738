//! Seccomp: profiles in the Docker/containers JSON format (the built-in
//! RuntimeDefault, `seccomp_profile`, Localhost profiles) are parsed once
//! into types, then resolved for one container into the OCI form: a rule
//! that holds only for some capabilities, architectures or kernels is kept
//! or dropped by the container's capability set and the host.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// The built-in RuntimeDefault profile: an allow-list with the rules of the
/// runtime/default profile of containerd and Docker.
const RUNTIME_DEFAULT: &str = include_str!("seccomp_default.json");

/// Why a profile file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file cannot be read.
    #[error("seccomp profile {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a profile.
    #[error("seccomp profile {}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line and column.
        source: serde_json::Error,
    },
}

/// A field that may be absent or `null` (both mean empty).
fn null_is_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string that must be one of a known set (what libseccomp and runc
/// accept), so a typo is a start-up or request error, not a runc failure.
macro_rules! known_name {
    ($name:ident, $what:literal, [$($known:literal),* $(,)?]) => {
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                if [$($known),*].contains(&s.as_str()) {
                    Ok(Self(s))
                } else {
                    Err(format!("{s:?} is not {}", $what))
                }
            }
        }
    };
}

known_name!(
    Action,
    "a seccomp action",
    [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ]
);

known_name!(
    Op,
    "a seccomp comparison",
    [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ]
);

known_name!(
    Arch,
    "a seccomp architecture",
    [
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_LOONGARCH64",
    ]
);

/// A kernel version `major.minor` (a patch level is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct KernelVersion(pub u32, pub u32);

impl TryFrom<String> for KernelVersion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let mut parts = s.split(['.', '-', '+']);
        let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
        match (number(), number()) {
            (Some(major), Some(minor)) => Ok(Self(major, minor)),
            _ => Err(format!("{s:?} is not a kernel version (major.minor)")),
        }
    }
}

/// An architecture entry and its sub-architectures (a 64-bit host also runs
/// 32-bit programs, which need their own filter).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default, deserialize_with = "null_is_empty")]
    sub_architectures: Vec<Arch>,
}

/// The conditions of a rule (`includes`: all must hold; `excludes`: none).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conditions {
    #[serde(default, deserialize_with = "null_is_empty")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_is_empty")]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<KernelVersion>,
}

/// A condition on one argument of the call.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgCondition {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: Op,
}

/// A rule as written: `names` or the older single `name`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleText {
    #[serde(default, deserialize_with = "null_is_empty")]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: Action,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_is_empty")]
    args: Vec<ArgCondition>,
    #[serde(default, deserialize_with = "null_is_empty")]
    includes: Conditions,
    #[serde(default, deserialize_with = "null_is_empty")]
    excludes: Conditions,
}

/// One rule: the action for some system calls, under conditions.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RuleText")]
struct Rule {
    names: Vec<String>,
    action: Action,
    errno_ret: Option<u32>,
    args: Vec<ArgCondition>,
    includes: Conditions,
    excludes: Conditions,
}

impl TryFrom<RuleText> for Rule {
    type Error = String;
    fn try_from(t: RuleText) -> Result<Self, String> {
        let mut names = t.names;
        names.extend(t.name);
        if names.is_empty() {
            return Err("a rule names no system call".into());
        }
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(format!("{bad:?} is not a system call name"));
        }
        if let Some(arg) = t.args.iter().find(|a| a.index > 5) {
            return Err(format!("argument index {} is not one of 0 to 5", arg.index));
        }
        let caps = |c: Conditions| Conditions {
            caps: c.caps.iter().map(|c| capability(c)).collect(),
            ..c
        };
        Ok(Self {
            names,
            action: t.action,
            errno_ret: t.errno_ret,
            args: t.args,
            includes: caps(t.includes),
            excludes: caps(t.excludes),
        })
    }
}

/// `sys_admin`, `SYS_ADMIN` and `CAP_SYS_ADMIN` all as `CAP_SYS_ADMIN`.
fn capability(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// A seccomp profile in the Docker/containers format, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: Action,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_is_empty")]
    architectures: Vec<Arch>,
    #[serde(default, deserialize_with = "null_is_empty")]
    arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "null_is_empty")]
    syscalls: Vec<Rule>,
}

/// What a profile's conditional rules are checked against, besides the
/// container's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// The architecture as profiles name it in `arches` (Go's names:
    /// `amd64`, `arm64`, ...).
    pub arch: &'static str,
    /// The architecture as libseccomp names it (`SCMP_ARCH_X86_64`).
    pub seccomp_arch: &'static str,
    /// The running kernel.
    pub kernel: KernelVersion,
}

impl Platform {
    /// This host: the architecture this program was built for and the
    /// running kernel (read once).
    pub fn host() -> &'static Platform {
        static HOST: OnceLock<Platform> = OnceLock::new();
        HOST.get_or_init(|| {
            let (arch, seccomp_arch) = match std::env::consts::ARCH {
                "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
                "x86" => ("386", "SCMP_ARCH_X86"),
                "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
                "arm" => ("arm", "SCMP_ARCH_ARM"),
                "s390x" => ("s390x", "SCMP_ARCH_S390X"),
                "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
                "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
                "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
                "loongarch64" => ("loong64", "SCMP_ARCH_LOONGARCH64"),
                other => (other, ""),
            };
            let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .and_then(|r| KernelVersion::try_from(r.trim().to_string()).ok())
                .unwrap_or(KernelVersion(0, 0));
            Platform {
                arch,
                seccomp_arch,
                kernel,
            }
        })
    }

    /// Whether `name` in a rule's `arches` means this platform (`x86` is
    /// also said for Go's `386`).
    fn is(&self, name: &str) -> bool {
        name == self.arch || (name == "x86" && self.arch == "386")
    }
}

impl Rule {
    /// Whether the rule applies to a process holding `caps` on `platform`.
    fn applies(&self, caps: &[String], platform: &Platform) -> bool {
        let (inc, exc) = (&self.includes, &self.excludes);
        let holds = |c: &String| caps.contains(c);
        !(exc.arches.iter().any(|a| platform.is(a))
            || exc.caps.iter().any(holds)
            || exc.min_kernel.is_some_and(|k| platform.kernel >= k)
            || (!inc.arches.is_empty() && !inc.arches.iter().any(|a| platform.is(a)))
            || !inc.caps.iter().all(holds)
            || inc.min_kernel.is_some_and(|k| platform.kernel < k))
    }

    fn to_oci(&self) -> Value {
        let mut rule = json!({"names": self.names, "action": self.action.0});
        if let Some(errno) = self.errno_ret {
            rule["errnoRet"] = errno.into();
        }
        if !self.args.is_empty() {
            let args: Vec<Value> = self
                .args
                .iter()
                .map(|a| json!({"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op.0}))
                .collect();
            rule["args"] = args.into();
        }
        rule
    }
}

impl Profile {
    /// The built-in RuntimeDefault profile.
    pub fn runtime_default() -> &'static Profile {
        static PROFILE: OnceLock<Profile> = OnceLock::new();
        PROFILE.get_or_init(|| {
            // Compiled in and checked by the unit tests.
            Profile::parse(RUNTIME_DEFAULT).expect("the built-in seccomp profile parses")
        })
    }

    /// A profile from its JSON text.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The profile in the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ProfileError::Invalid {
            path: path.into(),
            source,
        })
    }

    /// `seccomp_profile` from crio.conf: the file's profile, or None (the
    /// built-in one) when the setting is empty.
    pub fn configured(path: &Path) -> Result<Option<Self>, ProfileError> {
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        Self::load(path).map(Some)
    }

    /// The OCI `linux.seccomp` object for a process holding `caps` (as
    /// `CAP_X`) on `platform`.
    pub fn resolve(&self, caps: &[String], platform: &Platform) -> Value {
        let mut arches: Vec<&str> = self.architectures.iter().map(|a| a.0.as_str()).collect();
        for m in &self.arch_map {
            if m.architecture.0 == platform.seccomp_arch {
                arches.push(&m.architecture.0);
                arches.extend(m.sub_architectures.iter().map(|a| a.0.as_str()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        arches.retain(|a| seen.insert(*a));
        let syscalls: Vec<Value> = self
            .syscalls
            .iter()
            .filter(|r| r.applies(caps, platform))
            .map(Rule::to_oci)
            .collect();
        let mut oci = json!({
            "defaultAction": self.default_action.0,
            "architectures": arches,
            "syscalls": syscalls,
        });
        if let Some(errno) = self.default_errno_ret {
            oci["defaultErrnoRet"] = errno.into();
        }
        oci
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: Platform = Platform {
        arch: "amd64",
        seccomp_arch: "SCMP_ARCH_X86_64",
        kernel: KernelVersion(6, 1),
    };

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
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
        let p = Profile::runtime_default().resolve(&caps(&["CAP_CHOWN"]), &AMD64);
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
        let p = Profile::runtime_default().resolve(&[], &old);
        assert!(rules_for(&p, "ptrace").is_empty());
    }

    #[test]
    fn capability_rules_follow_the_capability_set() {
        let profile = Profile::runtime_default();
        let admin = profile.resolve(&caps(&["CAP_SYS_ADMIN"]), &AMD64);
        let clone = rules_for(&admin, "clone");
        assert_eq!(clone.len(), 1);
        assert!(
            clone[0].get("args").is_none(),
            "unconditional with SYS_ADMIN"
        );
        assert_eq!(rules_for(&admin, "clone3")[0]["action"], "SCMP_ACT_ALLOW");
        assert_eq!(rules_for(&admin, "mount").len(), 1);
        assert!(rules_for(&admin, "init_module").is_empty());
        let module = profile.resolve(&caps(&["CAP_SYS_MODULE"]), &AMD64);
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
        let oci = profile.resolve(&[], &AMD64);
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
        let admin = profile.resolve(&caps(&["CAP_SYS_ADMIN"]), &AMD64);
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
        assert!(
            rule(r#"{"names": [], "action": "SCMP_ACT_LOG"}"#).contains("names no system call")
        );
        assert!(
            rule(r#"{"names": ["a b"], "action": "SCMP_ACT_LOG"}"#)
                .contains("not a system call name")
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
        assert_eq!(p.resolve(&[], &AMD64)["defaultAction"], "SCMP_ACT_LOG");
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
}
