//! Seccomp: profiles in the Docker/containers JSON format (the built-in
//! RuntimeDefault, `seccomp_profile`, Localhost profiles) are parsed once
//! into types, then resolved for one container into the OCI form: a rule
//! that holds only for some capabilities, architectures or kernels is kept
//! or dropped by the container's capability set and the host.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use oci_spec::runtime::{
    Arch as OciArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Deserializer};

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

/// What is wrong with one value of a profile (serde adds where it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A name outside the known set.
    #[error("{name:?} is not {what}")]
    Unknown {
        /// The name given.
        name: String,
        /// What it should have been, with its article.
        what: &'static str,
    },
    /// A rule without system calls.
    #[error("a rule names no system call")]
    NoSystemCall,
    /// A system call name with characters no system call has.
    #[error("{0:?} is not a system call name")]
    SystemCallName(String),
    /// An argument beyond the six a system call has.
    #[error("argument index {0} is not one of 0 to 5")]
    ArgumentIndex(u32),
    /// A kernel version that is not `major.minor`.
    #[error("{0:?} is not a kernel version (major.minor)")]
    KernelVersion(String),
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
/// The value is the `oci-spec` type of the same name.
macro_rules! known_name {
    ($name:ident, $oci:ty, $what:literal, [$($known:literal),* $(,)?]) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        struct $name($oci);

        impl $name {
            #[cfg(test)]
            const KNOWN: &[&str] = &[$($known),*];
        }

        impl TryFrom<String> for $name {
            type Error = RuleError;
            fn try_from(s: String) -> Result<Self, RuleError> {
                [$($known),*]
                    .contains(&s.as_str())
                    .then(|| <$oci>::from_str(&s).ok())
                    .flatten()
                    .map(Self)
                    .ok_or(RuleError::Unknown { name: s, what: $what })
            }
        }
    };
}

known_name!(
    Action,
    LinuxSeccompAction,
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
    LinuxSeccompOperator,
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
    OciArch,
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
    type Error = RuleError;
    fn try_from(s: String) -> Result<Self, RuleError> {
        let mut parts = s.split(['.', '-', '+']);
        let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
        match (number(), number()) {
            (Some(major), Some(minor)) => Ok(Self(major, minor)),
            _ => Err(RuleError::KernelVersion(s)),
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
    type Error = RuleError;
    fn try_from(t: RuleText) -> Result<Self, RuleError> {
        let mut names = t.names;
        names.extend(t.name);
        if names.is_empty() {
            return Err(RuleError::NoSystemCall);
        }
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(RuleError::SystemCallName(bad.clone()));
        }
        if let Some(arg) = t.args.iter().find(|a| a.index > 5) {
            return Err(RuleError::ArgumentIndex(arg.index));
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

    fn to_oci(&self) -> LinuxSyscall {
        let args: Vec<LinuxSeccompArg> = self
            .args
            .iter()
            .map(|a| {
                LinuxSeccompArgBuilder::default()
                    .index(a.index as usize)
                    .value(a.value)
                    .value_two(a.value_two)
                    .op(a.op.0)
                    .build()
                    // Every field has a default: the builder cannot fail.
                    .expect("a seccomp argument builds")
            })
            .collect();
        let mut rule = LinuxSyscall::default();
        rule.set_names(self.names.clone())
            .set_action(self.action.0)
            .set_errno_ret(self.errno_ret)
            .set_args((!args.is_empty()).then_some(args));
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
    pub fn resolve(&self, caps: &[String], platform: &Platform) -> LinuxSeccomp {
        let mut arches: Vec<OciArch> = self.architectures.iter().map(|a| a.0).collect();
        for m in &self.arch_map {
            if m.architecture.0.to_string() == platform.seccomp_arch {
                arches.push(m.architecture.0);
                arches.extend(m.sub_architectures.iter().map(|a| a.0));
            }
        }
        let mut unique = Vec::with_capacity(arches.len());
        for a in arches {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|r| r.applies(caps, platform))
            .map(Rule::to_oci)
            .collect();
        let mut oci = LinuxSeccomp::default();
        oci.set_default_action(self.default_action.0)
            .set_default_errno_ret(self.default_errno_ret)
            .set_architectures(Some(unique))
            .set_syscalls(Some(syscalls));
        oci
    }
}

#[cfg(test)]
mod tests;
