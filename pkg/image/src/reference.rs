//! Image references in the Docker/OCI distribution grammar:
//! `registry[:port]/repository[:tag][@algorithm:hex]`.
//!
//! [`Reference::parse`] takes fully qualified names only; short names
//! (`busybox:1.36`) are resolved by registries.conf first
//! (`crate::registries`). Docker Hub names are normalised so one image has
//! one spelling: `index.docker.io` becomes `docker.io`, and a single-component
//! repository on it gains `library/`.

use std::fmt;

/// Longest input accepted, to bound work on hostile names.
pub const MAX_INPUT: usize = 4096;
/// Longest `registry/repository`, as the distribution grammar limits it.
pub const MAX_NAME: usize = 255;
/// Longest tag.
pub const MAX_TAG: usize = 128;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy registry name, normalised to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Docker Hub's namespace of official images.
const DOCKER_HUB_LIBRARY: &str = "library";

/// A parsed, validated and normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]` of the registry, e.g. `quay.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// The repository path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    /// The tag, if the reference names one.
    pub tag: Option<String>,
    /// The manifest digest (`algorithm:hex`), if the reference pins one.
    pub digest: Option<String>,
}

/// Why an image reference was refused; each names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("image reference is empty")]
    Empty,
    /// Longer than [`MAX_INPUT`] bytes.
    #[error("image reference of {0} bytes is longer than the limit of {MAX_INPUT}")]
    TooLong(usize),
    /// No registry part: a short name, to resolve through registries.conf.
    #[error("image reference {0:?} is not fully qualified: it names no registry")]
    NotQualified(String),
    /// A bad `host[:port]`.
    #[error("image reference {reference:?}: registry {registry:?}: {reason}")]
    Registry {
        /// The whole input.
        reference: String,
        /// The registry part.
        registry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bad repository path.
    #[error("image reference {reference:?}: repository {repository:?}: {reason}")]
    Repository {
        /// The whole input.
        reference: String,
        /// The repository part.
        repository: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bad tag.
    #[error("image reference {reference:?}: tag {tag:?}: {reason}")]
    Tag {
        /// The whole input.
        reference: String,
        /// The tag part.
        tag: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bad digest.
    #[error("image reference {reference:?}: digest {digest:?}: {reason}")]
    Digest {
        /// The whole input.
        reference: String,
        /// The digest part.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// True when `name` has no registry part, so registries.conf must qualify it:
/// its first `/`-separated component has no `.` or `:` and is not
/// `localhost` (a name without `/` is always short).
pub fn is_short_name(name: &str) -> bool {
    match name.split_once('/') {
        None => true,
        Some((first, _)) => !looks_like_registry(first),
    }
}

/// What follows `prefix` (`host[:port][/path]`) in `name`
/// (`registry/repository`), when the prefix covers whole components: `""`
/// or a rest starting with `/`. A host prefix never matches another port.
pub(crate) fn strip_name_prefix<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The distribution rule telling a registry from a repository namespace.
fn looks_like_registry(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

impl ReferenceError {
    /// The same error told of `input`, for callers that parsed a name
    /// derived from what the user gave.
    pub(crate) fn with_input(self, input: &str) -> Self {
        let input = input.to_string();
        match self {
            ReferenceError::NotQualified(_) => ReferenceError::NotQualified(input),
            ReferenceError::Registry {
                registry, reason, ..
            } => ReferenceError::Registry {
                reference: input,
                registry,
                reason,
            },
            ReferenceError::Repository {
                repository, reason, ..
            } => ReferenceError::Repository {
                reference: input,
                repository,
                reason,
            },
            ReferenceError::Tag { tag, reason, .. } => ReferenceError::Tag {
                reference: input,
                tag,
                reason,
            },
            ReferenceError::Digest { digest, reason, .. } => ReferenceError::Digest {
                reference: input,
                digest,
                reason,
            },
            other @ (ReferenceError::Empty | ReferenceError::TooLong(_)) => other,
        }
    }
}

impl Reference {
    /// Parses a fully qualified reference, validates every part and
    /// normalises Docker Hub names.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() > MAX_INPUT {
            return Err(ReferenceError::TooLong(input.len()));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/', so a
        // registry port is never mistaken for one.
        let last_slash = name_and_tag.rfind('/').unwrap_or(0);
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(i) if i > last_slash => (&name_and_tag[..i], Some(&name_and_tag[i + 1..])),
            _ => (name_and_tag, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((r, repo)) if looks_like_registry(r) => (r, repo),
            _ => return Err(ReferenceError::NotQualified(input.to_string())),
        };
        if let Some(reason) = registry_problem(registry) {
            return Err(ReferenceError::Registry {
                reference: input.to_string(),
                registry: registry.to_string(),
                reason,
            });
        }
        if let Some(reason) = repository_problem(repository) {
            return Err(ReferenceError::Repository {
                reference: input.to_string(),
                repository: repository.to_string(),
                reason,
            });
        }
        if let Some(tag) = tag
            && let Some(reason) = tag_problem(tag)
        {
            return Err(ReferenceError::Tag {
                reference: input.to_string(),
                tag: tag.to_string(),
                reason,
            });
        }
        if let Some(digest) = digest
            && let Some(reason) = digest_problem(digest)
        {
            return Err(ReferenceError::Digest {
                reference: input.to_string(),
                digest: digest.to_string(),
                reason,
            });
        }
        let (registry, repository) = normalise_docker_hub(registry, repository);
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(ReferenceError::Repository {
                reference: input.to_string(),
                repository,
                reason: "registry and repository together are longer than 255 characters",
            });
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, or `latest` when the reference names none.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// What to ask the registry's manifest endpoint for: the digest when the
    /// reference pins one, else the tag (or `latest`).
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .unwrap_or_else(|| self.tag_or_latest())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn normalise_docker_hub(registry: &str, repository: &str) -> (String, String) {
    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("{DOCKER_HUB_LIBRARY}/{repository}")
    } else {
        repository.to_string()
    };
    (registry.to_string(), repository)
}

/// What is wrong with a `host[:port]`, if anything. Hosts are DNS names
/// (letters, digits, inner hyphens, dot-separated), IPv4 addresses, or IPv6
/// addresses in brackets.
pub(crate) fn registry_problem(registry: &str) -> Option<&'static str> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Some("unclosed '[' in IPv6 address");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Some("invalid IPv6 address");
        }
        match after {
            "" => ("", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return Some("unexpected characters after IPv6 address"),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("port must be 1 to 5 digits");
    }
    if registry.starts_with('[') {
        return None;
    }
    if host.is_empty() {
        return Some("empty host");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !host.split('.').all(label_ok) {
        return Some("host must be dot-separated letters, digits and inner hyphens");
    }
    None
}

/// What is wrong with a repository path, if anything: `/`-separated
/// components of lowercase letters and digits, joined inside a component by
/// one `.`, one or two `_`, or any number of `-`.
fn repository_problem(repository: &str) -> Option<&'static str> {
    if repository.is_empty() {
        return Some("empty repository");
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("repository must be lowercase");
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Some("empty path component");
        }
        if let Some(reason) = path_component_problem(component) {
            return Some(reason);
        }
    }
    None
}

fn path_component_problem(component: &str) -> Option<&'static str> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes
        .iter()
        .all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("only lowercase letters, digits, '.', '_' and '-' are allowed");
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Some("a path component must start and end with a letter or digit");
    }
    // Each run of separators must be ".", "_", "__" or a run of '-'.
    for run in component.split(|c: char| c.is_ascii_alphanumeric()) {
        let ok = run.is_empty()
            || run == "."
            || run == "_"
            || run == "__"
            || run.bytes().all(|b| b == b'-');
        if !ok {
            return Some("separators must be '.', '_', '__' or a run of '-'");
        }
    }
    None
}

/// What is wrong with a tag, if anything: a word character, then up to 127
/// word characters, '.' or '-'.
fn tag_problem(tag: &str) -> Option<&'static str> {
    if tag.is_empty() {
        return Some("empty tag");
    }
    if tag.len() > MAX_TAG {
        return Some("longer than 128 characters");
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if !word(bytes[0]) {
        return Some("must start with a letter, digit or '_'");
    }
    if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Some("only letters, digits, '_', '.' and '-' are allowed");
    }
    None
}

/// What is wrong with a digest, if anything. Only the algorithms a registry
/// client can verify are accepted: `sha256` (64 lowercase hex digits) and
/// `sha512` (128).
pub(crate) fn digest_problem(digest: &str) -> Option<&'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Some("must be algorithm:hex");
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Some("unsupported algorithm (sha256 and sha512 are)"),
    };
    if hex.len() != want {
        return Some(if want == 64 {
            "sha256 needs 64 hex digits"
        } else {
            "sha512 needs 128 hex digits"
        });
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Some("must be lowercase hex");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_registry_repository_tag_digest() {
        let r = parse("quay.io/ns/app:1.0");
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.repository, "ns/app");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.digest, None);

        let r = parse(&format!("127.0.0.1:5000/a/b/c@{D}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));

        let r = parse(&format!("localhost/app:v2@{D}"));
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.digest.as_deref(), Some(D));

        let r = parse("localhost:5000/app");
        assert_eq!((r.registry.as_str(), r.tag), ("localhost:5000", None));
    }

    #[test]
    fn port_is_not_a_tag() {
        let r = parse("registry.example.com:443/app");
        assert_eq!(r.registry, "registry.example.com:443");
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag, None);
    }

    #[test]
    fn ipv6_registry() {
        let r = parse("[::1]:5000/app:tag");
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert!(matches!(
            Reference::parse("[zz]:5000/app"),
            Err(ReferenceError::Registry { .. })
        ));
    }

    #[test]
    fn normalises_docker_hub() {
        assert_eq!(parse("docker.io/busybox").repository, "library/busybox");
        let r = parse("index.docker.io/busybox:1.36");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
        assert_eq!(parse("docker.io/user/app").repository, "user/app");
        // Other registries keep single-component repositories as they are.
        assert_eq!(parse("quay.io/busybox").repository, "busybox");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "quay.io/ns/app:1.0".to_string(),
            format!("quay.io/ns/app@{D}"),
            format!("quay.io/ns/app:1.0@{D}"),
            "127.0.0.1:5000/app".to_string(),
        ] {
            assert_eq!(parse(&s).to_string(), s);
            assert_eq!(s.parse::<Reference>().map(|r| r.to_string()), Ok(s.clone()));
        }
    }

    #[test]
    fn tag_digest_helpers() {
        let r = parse("quay.io/app");
        assert_eq!(r.tag_or_latest(), "latest");
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.name(), "quay.io/app");
        let r = parse(&format!("quay.io/app:v1@{D}"));
        assert_eq!(r.tag_or_latest(), "v1");
        assert_eq!(r.manifest_reference(), D);
    }

    #[test]
    fn name_prefixes_cover_whole_components() {
        assert_eq!(strip_name_prefix("quay.io/a/b", "quay.io"), Some("/a/b"));
        assert_eq!(strip_name_prefix("quay.io/a/b", "quay.io/a"), Some("/b"));
        assert_eq!(strip_name_prefix("quay.io/a/b", "quay.io/a/b"), Some(""));
        assert_eq!(strip_name_prefix("quay.io/ab", "quay.io/a"), None);
        assert_eq!(strip_name_prefix("quay.io:5000/a", "quay.io"), None);
    }

    #[test]
    fn short_names() {
        for s in [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "user/app:v1",
            "a/b/c",
        ] {
            assert!(is_short_name(s), "{s}");
            assert_eq!(
                Reference::parse(s),
                Err(ReferenceError::NotQualified(s.into()))
            );
        }
        for s in [
            "quay.io/app",
            "localhost/app",
            "host:5000/app",
            "docker.io/busybox",
        ] {
            assert!(!is_short_name(s), "{s}");
        }
        // "localhost:5000" alone is repository "localhost" with tag "5000".
        assert!(is_short_name("localhost:5000"));
    }

    #[test]
    fn validates_repository() {
        for (s, reason) in [
            ("quay.io/App", "repository must be lowercase"),
            ("quay.io/", "empty repository"),
            ("quay.io/a//b", "empty path component"),
            (
                "quay.io/-a",
                "a path component must start and end with a letter or digit",
            ),
            (
                "quay.io/a-",
                "a path component must start and end with a letter or digit",
            ),
            (
                "quay.io/a..b",
                "separators must be '.', '_', '__' or a run of '-'",
            ),
            (
                "quay.io/a___b",
                "separators must be '.', '_', '__' or a run of '-'",
            ),
            (
                "quay.io/a._b",
                "separators must be '.', '_', '__' or a run of '-'",
            ),
            (
                "quay.io/a b",
                "only lowercase letters, digits, '.', '_' and '-' are allowed",
            ),
            (
                "quay.io/é",
                "only lowercase letters, digits, '.', '_' and '-' are allowed",
            ),
        ] {
            match Reference::parse(s) {
                Err(ReferenceError::Repository { reason: r, .. }) => assert_eq!(r, reason, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        for ok in ["quay.io/a__b", "quay.io/a---b", "quay.io/a.b_c-d/e0"] {
            parse(ok);
        }
    }

    #[test]
    fn validates_registry() {
        for s in [
            "-bad.io/app",
            "bad-.io/app",
            "a..b/app",
            "host.io:/app",
            "host.io:123456/app",
            "host.io:12a/app",
            "ho_st.io/app",
            "[::1/app",
            "[::1]x/app",
        ] {
            assert!(
                matches!(Reference::parse(s), Err(ReferenceError::Registry { .. })),
                "{s}: {:?}",
                Reference::parse(s)
            );
        }
        // Registries may be spelt in upper case (DNS is case-insensitive).
        assert_eq!(parse("Quay.IO/app").registry, "Quay.IO");
    }

    #[test]
    fn validates_tag() {
        let long = "a".repeat(MAX_TAG);
        parse(&format!("quay.io/app:{long}"));
        parse("quay.io/app:V1.2-rc_3");
        for (tag, reason) in [
            ("", "empty tag"),
            (".hidden", "must start with a letter, digit or '_'"),
            ("-x", "must start with a letter, digit or '_'"),
            ("a+b", "only letters, digits, '_', '.' and '-' are allowed"),
        ] {
            let s = format!("quay.io/app:{tag}");
            match Reference::parse(&s) {
                Err(ReferenceError::Tag {
                    reason: r, tag: t, ..
                }) => {
                    assert_eq!((r, t.as_str()), (reason, tag), "{s}")
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        let too_long = format!("quay.io/app:{long}a");
        assert!(matches!(
            Reference::parse(&too_long),
            Err(ReferenceError::Tag {
                reason: "longer than 128 characters",
                ..
            })
        ));
    }

    #[test]
    fn validates_digest() {
        for (d, reason) in [
            ("sha256", "must be algorithm:hex"),
            ("md5:abcd", "unsupported algorithm (sha256 and sha512 are)"),
            ("sha256:abc", "sha256 needs 64 hex digits"),
            ("sha512:abc", "sha512 needs 128 hex digits"),
        ] {
            match Reference::parse(&format!("quay.io/app@{d}")) {
                Err(ReferenceError::Digest {
                    reason: r, digest, ..
                }) => {
                    assert_eq!((r, digest.as_str()), (reason, d))
                }
                other => panic!("{d}: {other:?}"),
            }
        }
        let upper = D.to_uppercase().replacen("SHA256", "sha256", 1);
        assert_eq!(digest_problem(&upper), Some("must be lowercase hex"));
        assert_eq!(digest_problem(&format!("sha512:{}", "0".repeat(128))), None);
        assert!(Reference::parse(&format!("quay.io/app@{D}@{D}")).is_err());
    }

    #[test]
    fn errors_name_the_input() {
        let e = Reference::parse("quay.io/Bad:1").unwrap_err().to_string();
        assert!(
            e.contains("\"quay.io/Bad:1\"") && e.contains("\"Bad\""),
            "{e}"
        );
        let e = Reference::parse("busybox").unwrap_err().to_string();
        assert_eq!(
            e,
            "image reference \"busybox\" is not fully qualified: it names no registry"
        );
    }

    #[test]
    fn hostile_inputs_fail_cleanly() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        let huge = format!("quay.io/{}", "a".repeat(MAX_INPUT));
        assert_eq!(
            Reference::parse(&huge),
            Err(ReferenceError::TooLong(huge.len()))
        );
        let long_name = format!("quay.io/{}", "a/".repeat(200) + "a");
        assert!(matches!(
            Reference::parse(&long_name),
            Err(ReferenceError::Repository { .. })
        ));
        for s in [
            "/",
            "//",
            ":",
            "@",
            "quay.io/:",
            "quay.io/@",
            "quay.io/app:@",
            "quay.io/app:tag@",
            ":/a",
            "[",
            "[]/a",
            "quay.io/a\0b",
            "quay.io/a\n",
            "quay.io:/",
            "\u{feff}q.io/a",
            "q.io/ä:ü@ö",
            "..../a",
            "q.io/a:b:c",
            "q.io/a/",
            "quay.io/../etc",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} parsed");
        }
    }
}
