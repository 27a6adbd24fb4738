//! registries.conf (the containers-registries.conf(5) version 2 format):
//! which registries qualify a short name, and where, through which mirrors
//! and how securely a fully qualified name is pulled.
//!
//! What is implemented, and how it reads the man page:
//! - `unqualified-search-registries`, `short-name-mode`, `[aliases]`,
//!   `[[registry]]` (`prefix`, `location`, `insecure`, `blocked`,
//!   `mirror-by-digest-only`) and `[[registry.mirror]]` (`location`,
//!   `insecure`, `pull-from-mirror`). Other keys (`credential-helpers`, ...)
//!   are ignored. The version 1 format (`[registries.search]`) is refused.
//! - A daemon has no terminal to prompt on, so `short-name-mode` works as:
//!   an alias always wins; `enforcing` (the default) with several search
//!   registries refuses the name as ambiguous, with one it uses it;
//!   `permissive` and `disabled` try every search registry in order.
//! - `prefix` is `host[:port][/path]` or `*.domain`; a prefix holding a tag
//!   or digest is refused. A host-only prefix does not match another port
//!   of the same host. The longest matching prefix wins; any exact prefix
//!   beats a wildcard. A wildcard prefix may not set `location`.
//! - Drop-ins (`*.conf` in lexical order) override the files before them:
//!   search registries and short-name mode when set, `[[registry]]` tables
//!   by prefix, aliases key by key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::reference::{
    DOCKER_HUB, MAX_INPUT, Reference, ReferenceError, is_short_name, registry_problem,
    strip_name_prefix,
};

mod file;

/// How short names are treated (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ShortNameMode {
    /// An ambiguous short name is an error.
    #[default]
    Enforcing,
    /// Every search registry is tried in order.
    Permissive,
    /// Every search registry is tried in order.
    Disabled,
}

/// Which pulls a mirror serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PullFromMirror {
    /// Every pull.
    #[default]
    All,
    /// Only pulls by digest.
    DigestOnly,
    /// Only pulls by tag.
    TagOnly,
}

/// One place to pull an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference rewritten for this mirror or location.
    pub reference: Reference,
    /// Plain HTTP and unverified TLS are allowed.
    pub insecure: bool,
    /// A mirror (else the registry's own location).
    pub mirror: bool,
}

/// Why registries.conf could not be read, or a name not resolved.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// A file exists but cannot be read, or is too large.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The drop-in directory exists but cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape.
    #[error("{source_name}: {detail}")]
    Syntax {
        /// The file.
        source_name: String,
        /// What the TOML parser said.
        detail: String,
    },
    /// The version 1 format.
    #[error(
        "{source_name}: the version 1 format ([registries.search], [registries.insecure], [registries.block]) is not supported: use unqualified-search-registries and [[registry]] tables"
    )]
    Version1 {
        /// The file.
        source_name: String,
    },
    /// A value that cannot work, e.g. `[[registry]] 2: prefix "x": ...`.
    #[error("{source_name}: {place} {value:?}: {reason}")]
    Invalid {
        /// The file.
        source_name: String,
        /// Where in the file.
        place: String,
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad image name.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A short name that enforcing mode cannot resolve without a prompt.
    #[error(
        "short name {name:?} is ambiguous: short-name-mode is enforcing and {registries:?} could all serve it: use a fully qualified name or an alias"
    )]
    Ambiguous {
        /// The name.
        name: String,
        /// The search registries.
        registries: Vec<String>,
    },
    /// A short name with neither an alias nor search registries.
    #[error("short name {0:?}: no alias and no unqualified-search-registries to resolve it")]
    NoSearchRegistries(String),
    /// A mirror or location gives no valid name for the image.
    #[error("image {reference}: rewritten for location {location:?}: {source}")]
    Rewrite {
        /// The image.
        reference: String,
        /// The mirror or registry location.
        location: String,
        /// Why the rewritten name is invalid.
        source: ReferenceError,
    },
    /// registries.conf blocks the registry.
    #[error("image {reference}: registry {prefix:?} is blocked by registries.conf")]
    Blocked {
        /// The image.
        reference: String,
        /// The `prefix` of the blocking `[[registry]]`.
        prefix: String,
    },
}

/// A `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mirror {
    location: String,
    insecure: bool,
    pull_from_mirror: PullFromMirror,
}

/// A `[[registry]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Registry {
    /// Normalised prefix: `host[:port][/path]` or `*.domain`.
    prefix: String,
    /// Normalised location, empty for a wildcard prefix.
    location: String,
    insecure: bool,
    blocked: bool,
    mirrors: Vec<Mirror>,
}

impl Registry {
    fn is_wildcard(&self) -> bool {
        self.prefix.starts_with("*.")
    }

    /// How many bytes of `name` (`registry/repository`) this prefix matches.
    fn matches(&self, name: &str, registry: &str) -> Option<usize> {
        if let Some(domain) = self.prefix.strip_prefix('*') {
            let host = host_of(registry);
            return (host.len() > domain.len() && host.ends_with(domain)).then_some(registry.len());
        }
        strip_name_prefix(name, &self.prefix).map(|_| self.prefix.len())
    }
}

/// The parsed configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    search: Vec<String>,
    short_name_mode: ShortNameMode,
    registries: Vec<Registry>,
    aliases: BTreeMap<String, Reference>,
    /// crio.conf's `insecure_registries`: hosts, `host:port` or CIDRs.
    extra_insecure: Vec<String>,
}

impl RegistriesConf {
    /// Sets crio.conf's `insecure_registries`: each a host, a `host:port` or
    /// a CIDR, whose registries may be reached over plain HTTP.
    pub fn set_insecure_registries(&mut self, registries: &[String]) {
        self.extra_insecure = registries.to_vec();
    }

    /// The fully qualified candidates for an image name a user gave, in the
    /// order to try them: a qualified name is itself; a short name is its
    /// alias, else each search registry as `short-name-mode` allows.
    pub fn resolve(&self, name: &str) -> Result<Vec<Reference>, RegistriesError> {
        if !is_short_name(name) {
            return Ok(vec![Reference::parse(name)?]);
        }
        // Parse the short name under a placeholder registry to split and
        // validate its repository, tag and digest.
        let short =
            Reference::parse(&format!("localhost/{name}")).map_err(|e| e.with_input(name))?;
        let qualify = |registry: &str, repository: &str| {
            let qualified = Reference {
                registry: registry.to_string(),
                repository: repository.to_string(),
                tag: short.tag.clone(),
                digest: short.digest.clone(),
            };
            // Parsed again to normalise Docker Hub names.
            Reference::parse(&qualified.to_string())
        };
        if let Some(alias) = self.aliases.get(&short.repository) {
            return Ok(vec![qualify(&alias.registry, &alias.repository)?]);
        }
        match (self.search.len(), self.short_name_mode) {
            (0, _) => Err(RegistriesError::NoSearchRegistries(name.to_string())),
            (2.., ShortNameMode::Enforcing) => Err(RegistriesError::Ambiguous {
                name: name.to_string(),
                registries: self.search.clone(),
            }),
            _ => self
                .search
                .iter()
                .map(|registry| qualify(registry, &short.repository).map_err(Into::into))
                .collect(),
        }
    }

    /// Where to pull `reference` from: the matching `[[registry]]`'s mirrors
    /// that serve this kind of pull, in order, then its location (the
    /// reference itself when no `[[registry]]` matches).
    pub fn endpoints(&self, reference: &Reference) -> Result<Vec<Endpoint>, RegistriesError> {
        let name = reference.name();
        let Some((registry, matched)) = self.find(&name, &reference.registry) else {
            return Ok(vec![Endpoint {
                reference: reference.clone(),
                insecure: self.extra_insecure(&reference.registry),
                mirror: false,
            }]);
        };
        if registry.blocked {
            return Err(RegistriesError::Blocked {
                reference: reference.to_string(),
                prefix: registry.prefix.clone(),
            });
        }
        let by_digest = reference.digest.is_some();
        let rewrite = |location: &str| -> Result<Reference, RegistriesError> {
            let mut rewritten = Reference::parse(&format!("{location}{}", &name[matched..]))
                .map_err(|source| RegistriesError::Rewrite {
                    reference: reference.to_string(),
                    location: location.to_string(),
                    source,
                })?;
            rewritten.tag = reference.tag.clone();
            rewritten.digest = reference.digest.clone();
            Ok(rewritten)
        };
        let mut endpoints = Vec::new();
        for mirror in &registry.mirrors {
            let serves = match mirror.pull_from_mirror {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if serves {
                let reference = rewrite(&mirror.location)?;
                endpoints.push(Endpoint {
                    insecure: mirror.insecure || self.extra_insecure(&reference.registry),
                    reference,
                    mirror: true,
                });
            }
        }
        let primary = if registry.location.is_empty() {
            reference.clone()
        } else {
            rewrite(&registry.location)?
        };
        endpoints.push(Endpoint {
            insecure: registry.insecure || self.extra_insecure(&primary.registry),
            reference: primary,
            mirror: false,
        });
        Ok(endpoints)
    }

    /// True when `host` (`host[:port]`) may be reached over plain HTTP: it
    /// is in `insecure_registries`, or a `[[registry]]` whose prefix is that
    /// host (or a wildcard covering it), or a location or mirror on it, is
    /// marked insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        if self.extra_insecure(host) {
            return true;
        }
        let on_host = |location: &str| location.split('/').next() == Some(host);
        let by_prefix = self.find(&format!("{host}/"), host).map(|(r, _)| r);
        self.registries.iter().any(|r| {
            let chosen = by_prefix.is_some_and(|p| std::ptr::eq(p, r));
            (r.insecure && (chosen || on_host(&r.location)))
                || r.mirrors.iter().any(|m| m.insecure && on_host(&m.location))
        })
    }

    /// The `[[registry]]` for a name and how many bytes of it its prefix
    /// matched: the longest exact prefix, else the longest wildcard.
    fn find(&self, name: &str, registry: &str) -> Option<(&Registry, usize)> {
        self.registries
            .iter()
            .filter_map(|r| r.matches(name, registry).map(|len| (r, len)))
            .max_by_key(|(r, _)| (!r.is_wildcard(), r.prefix.len()))
    }

    fn extra_insecure(&self, host: &str) -> bool {
        self.extra_insecure.iter().any(|entry| host_in(host, entry))
    }
}

/// True when `host` (`host[:port]`) is named by an `insecure_registries`
/// entry: the same `host[:port]`, the host without a port, or a CIDR
/// holding its address.
fn host_in(host: &str, entry: &str) -> bool {
    let entry = entry.trim();
    if entry == host || entry == host_of(host) {
        return true;
    }
    let Some((net, bits)) = entry.split_once('/') else {
        return false;
    };
    let host = host_of(host).trim_start_matches('[').trim_end_matches(']');
    let (Ok(net), Ok(bits), Ok(ip)) = (
        net.parse::<IpAddr>(),
        bits.parse::<u32>(),
        host.parse::<IpAddr>(),
    ) else {
        return false;
    };
    let (net, ip, width) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift >= width || (net >> shift) == (ip >> shift)
}

/// The host of a `host[:port]`, IPv6 brackets kept.
pub(crate) fn host_of(registry: &str) -> &str {
    match registry.rfind(':') {
        Some(i) if !registry[i..].contains(']') => &registry[..i],
        _ => registry,
    }
}

fn normalise_host(host: &str) -> String {
    match host {
        "index.docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// Why a host, prefix or location of registries.conf or policy.json is
/// refused.
#[derive(Debug, thiserror::Error)]
pub enum LocationProblem {
    /// A host with a path.
    #[error("must be host[:port] without a path")]
    HasPath,
    /// Not a registry host.
    #[error("{0}")]
    Host(&'static str),
    /// Longer than any name.
    #[error("too long")]
    TooLong,
    /// A path without a host before it.
    #[error("must start with a registry host")]
    NotQualified,
    /// Not a valid name.
    #[error(transparent)]
    Name(ReferenceError),
    /// A tag or digest where a repository is meant.
    #[error("a tag or digest here is not supported")]
    TagOrDigest,
}

/// Checks a `host[:port]` with no path.
pub(crate) fn host_problem(host: &str) -> Result<(), LocationProblem> {
    if host.contains('/') {
        return Err(LocationProblem::HasPath);
    }
    registry_problem(host).map_or(Ok(()), |reason| Err(LocationProblem::Host(reason)))
}

/// Normalises a `host[:port][/path]` prefix or location, as names are.
pub(crate) fn normalise_location(value: &str) -> Result<String, LocationProblem> {
    if value.len() > MAX_INPUT {
        return Err(LocationProblem::TooLong);
    }
    if !value.contains('/') {
        host_problem(value)?;
        return Ok(normalise_host(value));
    }
    let parsed = Reference::parse(value).map_err(|e| match e {
        ReferenceError::NotQualified(_) => LocationProblem::NotQualified,
        e => LocationProblem::Name(e),
    })?;
    if parsed.tag.is_some() || parsed.digest.is_some() {
        return Err(LocationProblem::TagOrDigest);
    }
    Ok(parsed.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn conf(text: &str) -> RegistriesConf {
        RegistriesConf::parse(text, "registries.conf").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        RegistriesConf::parse(text, "registries.conf")
            .expect_err(text)
            .to_string()
    }

    fn names(refs: &[Reference]) -> Vec<String> {
        refs.iter().map(ToString::to_string).collect()
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    /// (reference, insecure, mirror) of each endpoint.
    fn endpoints(c: &RegistriesConf, name: &str) -> Vec<(String, bool, bool)> {
        c.endpoints(&r(name))
            .unwrap()
            .into_iter()
            .map(|e| (e.reference.to_string(), e.insecure, e.mirror))
            .collect()
    }

    #[test]
    fn qualified_names_resolve_to_themselves() {
        let c = conf(r#"unqualified-search-registries = ["quay.io", "docker.io"]"#);
        assert_eq!(
            names(&c.resolve("quay.io/a/b:1").unwrap()),
            ["quay.io/a/b:1"]
        );
        assert_eq!(
            names(&c.resolve("index.docker.io/busybox").unwrap()),
            ["docker.io/library/busybox"]
        );
    }

    #[test]
    fn short_names_and_modes() {
        let several = r#"unqualified-search-registries = ["quay.io", "index.docker.io"]"#;
        // Enforcing is the default: ambiguous without a prompt.
        let e = conf(several).resolve("busybox").unwrap_err();
        assert!(matches!(e, RegistriesError::Ambiguous { .. }), "{e}");
        assert!(e.to_string().contains("\"busybox\""), "{e}");
        for mode in ["permissive", "disabled"] {
            let c = conf(&format!("{several}\nshort-name-mode = \"{mode}\""));
            assert_eq!(
                names(&c.resolve("busybox:1.36").unwrap()),
                ["quay.io/busybox:1.36", "docker.io/library/busybox:1.36"]
            );
            assert_eq!(
                names(&c.resolve(&format!("ns/app@{D}")).unwrap()),
                [
                    format!("quay.io/ns/app@{D}"),
                    format!("docker.io/ns/app@{D}")
                ]
            );
        }
        let one = conf(r#"unqualified-search-registries = ["127.0.0.1:5000"]"#);
        assert_eq!(
            names(&one.resolve("test/busybox").unwrap()),
            ["127.0.0.1:5000/test/busybox"]
        );
        let none = conf("");
        assert!(matches!(
            none.resolve("busybox"),
            Err(RegistriesError::NoSearchRegistries(n)) if n == "busybox"
        ));
    }

    #[test]
    fn aliases_win_in_every_mode() {
        let c = conf(
            r#"
            unqualified-search-registries = ["quay.io", "docker.io"]
            [aliases]
            "busybox" = "docker.io/library/busybox"
            "app" = "registry.example.com:5000/team/app"
            "#,
        );
        assert_eq!(
            names(&c.resolve("busybox").unwrap()),
            ["docker.io/library/busybox"]
        );
        assert_eq!(
            names(&c.resolve("app:v2").unwrap()),
            ["registry.example.com:5000/team/app:v2"]
        );
        // A name that is not an alias is still ambiguous.
        assert!(c.resolve("other").is_err());
    }

    #[test]
    fn bad_short_names_name_the_input() {
        let c = conf(r#"unqualified-search-registries = ["quay.io"]"#);
        let e = c.resolve("BusyBox").unwrap_err().to_string();
        assert_eq!(
            e,
            r#"image reference "BusyBox": repository "BusyBox": repository must be lowercase"#
        );
        assert!(c.resolve("").is_err());
        assert!(c.resolve("a:b:c").is_err());
        assert!(c.resolve(&"a".repeat(MAX_INPUT + 1)).is_err());
    }

    #[test]
    fn registry_prefix_location_and_mirrors() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "example.com/foo"
            location = "internal.example.com/bar"
            insecure = true
            [[registry.mirror]]
            location = "mirror-a.local/cache"
            [[registry.mirror]]
            location = "mirror-b.local:5000"
            insecure = true
            pull-from-mirror = "digest-only"
            [[registry.mirror]]
            location = "mirror-c.local"
            pull-from-mirror = "tag-only"

            [[registry]]
            location = "example.com"
            "#,
        );
        assert_eq!(
            endpoints(&c, "example.com/foo/app:1"),
            [
                ("mirror-a.local/cache/app:1".into(), false, true),
                ("mirror-c.local/app:1".into(), false, true),
                ("internal.example.com/bar/app:1".into(), true, false),
            ]
        );
        assert_eq!(
            endpoints(&c, &format!("example.com/foo/app@{D}")),
            [
                (format!("mirror-a.local/cache/app@{D}"), false, true),
                (format!("mirror-b.local:5000/app@{D}"), true, true),
                (format!("internal.example.com/bar/app@{D}"), true, false),
            ]
        );
        // The whole name as prefix leaves no repository on a host-only mirror.
        let e = c
            .endpoints(&r(&format!("example.com/foo@{D}")))
            .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "image example.com/foo@{D}: rewritten for location \"mirror-b.local:5000\": "
            )),
            "{e}"
        );
        // The shorter prefix applies elsewhere; a longer component is no match.
        assert_eq!(
            endpoints(&c, "example.com/foobar"),
            [("example.com/foobar".into(), false, false)]
        );
        // No [[registry]] at all: the reference itself.
        assert_eq!(
            endpoints(&c, "quay.io/x"),
            [("quay.io/x".into(), false, false)]
        );
    }

    #[test]
    fn host_prefix_does_not_match_other_port() {
        let c = conf("[[registry]]\nprefix = \"example.com\"\nblocked = true");
        assert!(c.endpoints(&r("example.com:5000/a")).is_ok());
        let e = c.endpoints(&r("example.com/a:1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"image example.com/a:1: registry "example.com" is blocked by registries.conf"#
        );
    }

    #[test]
    fn docker_hub_prefixes_are_normalised() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "docker.io/busybox"
            location = "mirror.local/hub-busybox"
            [[registry]]
            prefix = "index.docker.io"
            [[registry.mirror]]
            location = "mirror.local/hub"
            "#,
        );
        assert_eq!(
            endpoints(&c, "docker.io/busybox:1"),
            [("mirror.local/hub-busybox:1".into(), false, false)]
        );
        assert_eq!(
            endpoints(&c, "docker.io/user/app"),
            [
                ("mirror.local/hub/user/app".into(), false, true),
                ("docker.io/user/app".into(), false, false),
            ]
        );
    }

    #[test]
    fn wildcard_prefixes() {
        let c = conf(
            r#"
            [[registry]]
            prefix = "*.example.com"
            blocked = true
            [[registry]]
            prefix = "*.dev.example.com"
            insecure = true
            [[registry.mirror]]
            location = "cache.local"
            [[registry]]
            prefix = "ok.dev.example.com"
            "#,
        );
        assert!(matches!(
            c.endpoints(&r("a.example.com:5000/x")),
            Err(RegistriesError::Blocked { prefix, .. }) if prefix == "*.example.com"
        ));
        // The wildcard covers subdomains only.
        assert!(c.endpoints(&r("example.com/x")).is_ok());
        assert_eq!(
            endpoints(&c, "b.dev.example.com/x/y:1"),
            [
                ("cache.local/x/y:1".into(), false, true),
                ("b.dev.example.com/x/y:1".into(), true, false),
            ]
        );
        // An exact prefix beats the wildcards.
        assert_eq!(
            endpoints(&c, "ok.dev.example.com/x"),
            [("ok.dev.example.com/x".into(), false, false)]
        );
        assert!(c.is_insecure("b.dev.example.com"));
        assert!(!c.is_insecure("ok.dev.example.com"));
    }

    #[test]
    fn mirror_by_digest_only() {
        let c = conf(
            r#"
            [[registry]]
            location = "quay.io"
            mirror-by-digest-only = true
            [[registry.mirror]]
            location = "m1.local"
            [[registry.mirror]]
            location = "m2.local"
            pull-from-mirror = "all"
            "#,
        );
        assert_eq!(
            endpoints(&c, "quay.io/a:1"),
            [
                ("m2.local/a:1".into(), false, true),
                ("quay.io/a:1".into(), false, false)
            ]
        );
        assert_eq!(endpoints(&c, &format!("quay.io/a@{D}")).len(), 3);
    }

    #[test]
    fn insecure_registries_from_crio_conf() {
        let mut c = conf(
            r#"
            [[registry]]
            location = "plain.local:5000"
            insecure = true
            [[registry]]
            location = "secure.local"
            [[registry.mirror]]
            location = "mirror.local:8080/x"
            insecure = true
            "#,
        );
        assert!(c.is_insecure("plain.local:5000"));
        assert!(c.is_insecure("mirror.local:8080"));
        assert!(!c.is_insecure("secure.local"));
        assert!(!c.is_insecure("127.0.0.1:5000"));
        c.set_insecure_registries(&[
            "127.0.0.0/8".into(),
            "other.local".into(),
            "exact.local:99".into(),
            "fd00::/8".into(),
            "bogus/99".into(),
        ]);
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert!(c.is_insecure("127.255.0.1"));
        assert!(!c.is_insecure("128.0.0.1:5000"));
        assert!(c.is_insecure("other.local:443"));
        assert!(c.is_insecure("exact.local:99"));
        assert!(!c.is_insecure("exact.local:98"));
        assert!(c.is_insecure("[fd12::1]:5000"));
        assert!(!c.is_insecure("[fe80::1]"));
        assert_eq!(
            endpoints(&c, "127.0.0.1:5000/a"),
            [("127.0.0.1:5000/a".into(), true, false)]
        );
        assert_eq!(
            endpoints(&c, "secure.local/a"),
            [
                ("mirror.local:8080/x/a".into(), true, true),
                ("secure.local/a".into(), false, false)
            ]
        );
        assert!(host_in("10.1.2.3", "0.0.0.0/0"));
        assert!(!host_in("10.1.2.3", "10.0.0.0/33"));
    }

    #[test]
    fn config_errors_name_file_place_and_value() {
        assert_eq!(
            err("[[registry]]\nprefix = \"ok.io\"\n[[registry]]\nprefix = \"Bad Host\""),
            r#"registries.conf: [[registry]] 2: prefix "Bad Host": host must be dot-separated letters, digits and inner hyphens"#
        );
        for (text, needle) in [
            (
                "[[registry]]\ninsecure = true",
                "prefix or location must be set",
            ),
            (
                "[[registry]]\nprefix = \"*.a.io\"\nlocation = \"b.io\"",
                "must be unset with a wildcard prefix",
            ),
            (
                "[[registry]]\nprefix = \"*.a.io/x\"",
                "a wildcard prefix is *.domain only",
            ),
            (
                "[[registry]]\nprefix = \"a.io/x:tag\"",
                "a tag or digest here is not supported",
            ),
            (
                "[[registry]]\nprefix = \"ns/app\"",
                "must start with a registry host",
            ),
            (
                "[[registry]]\nlocation = \"a.io\"\n[[registry]]\nlocation = \"a.io\"",
                "defined twice in one file",
            ),
            (
                "[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\nlocation = \"x y\"",
                "[[registry]] 1: mirror 1: location \"x y\"",
            ),
            (
                "unqualified-search-registries = [\"quay.io/ns\"]",
                "unqualified-search-registries[0] \"quay.io/ns\": must be host[:port] without a path",
            ),
            (
                "[aliases]\n\"quay.io/x\" = \"quay.io/x\"",
                "must be a short name without tag or digest",
            ),
            (
                "[aliases]\n\"x:1\" = \"quay.io/x\"",
                "must be a short name without tag or digest",
            ),
            ("[aliases]\nx = \"quay.io/x:1\"", "without tag or digest"),
            ("[aliases]\nx = \"x\"", "is not fully qualified"),
            (
                "short-name-mode = \"strict\"",
                "registries.conf: line 1: unknown variant `strict`",
            ),
            (
                "[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\nlocation = \"b.io\"\npull-from-mirror = \"some\"",
                "unknown variant `some`",
            ),
            ("unqualified-search-registries = \"quay.io\"", "line 1"),
            ("this is not toml", "registries.conf: line 1"),
            (
                "[registries.search]\nregistries = [\"quay.io\"]",
                "the version 1 format",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn drop_ins_override_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        let dropins = dir.path().join("registries.conf.d");
        std::fs::create_dir(&dropins).unwrap();
        std::fs::write(
            &main,
            r#"
            unqualified-search-registries = ["quay.io", "docker.io"]
            [[registry]]
            location = "a.io"
            blocked = true
            [[registry]]
            location = "b.io"
            [aliases]
            x = "quay.io/x"
            y = "quay.io/y"
            "#,
        )
        .unwrap();
        std::fs::write(
            dropins.join("10-unblock.conf"),
            "[[registry]]\nlocation = \"a.io\"\ninsecure = true\n[aliases]\ny = \"b.io/y\"",
        )
        .unwrap();
        std::fs::write(
            dropins.join("20-search.conf"),
            "unqualified-search-registries = [\"c.io\"]\nshort-name-mode = \"permissive\"",
        )
        .unwrap();
        std::fs::write(dropins.join("30-ignored.txt"), "not toml at all").unwrap();
        std::fs::create_dir(dropins.join("40-dir.conf")).unwrap();

        let c = RegistriesConf::load(&main, Some(&dropins)).unwrap();
        assert_eq!(names(&c.resolve("z").unwrap()), ["c.io/z"]);
        assert_eq!(names(&c.resolve("x").unwrap()), ["quay.io/x"]);
        assert_eq!(names(&c.resolve("y").unwrap()), ["b.io/y"]);
        assert_eq!(endpoints(&c, "a.io/r"), [("a.io/r".into(), true, false)]);
        assert_eq!(c.registries.len(), 2);

        // A later drop-in's error names that drop-in.
        std::fs::write(dropins.join("50-bad.conf"), "short-name-mode = 3").unwrap();
        let e = RegistriesConf::load(&main, Some(&dropins))
            .unwrap_err()
            .to_string();
        assert!(e.contains("50-bad.conf: line 1"), "{e}");
    }

    #[test]
    fn missing_files_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        let c = RegistriesConf::load(&dir.path().join("none"), Some(&dir.path().join("none.d")))
            .unwrap();
        assert_eq!(c, RegistriesConf::default());
        // A directory where the file should be is an error naming it.
        let e = RegistriesConf::load(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&dir.path().display().to_string()), "{e}");
    }

    #[test]
    fn hostile_files_fail_cleanly() {
        for text in [
            "[[registry]]\nprefix = \"\"",
            "[[registry]]\nprefix = \"*.\"",
            "[[registry]]\nprefix = \"*\"",
            "[[registry]]\nprefix = \"[::1\"",
            "[[registry]]\nlocation = \"a.io/../../etc\"",
            "unqualified-search-registries = [\"\"]",
            "unqualified-search-registries = [\"a.io:99999999\"]",
            "[aliases]\n\"\" = \"quay.io/x\"",
            "\u{0}",
        ] {
            assert!(RegistriesConf::parse(text, "f").is_err(), "{text:?}");
        }
        let long = format!("[[registry]]\nprefix = \"a.io/{}\"", "a".repeat(MAX_INPUT));
        assert!(RegistriesConf::parse(&long, "f").is_err());
    }
}
