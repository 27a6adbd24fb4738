//! Registry credentials: what a pull presents to a registry, taken from the
//! CRI request's AuthConfig or from an auth file in the containers
//! auth.json format, and the `WWW-Authenticate` challenges registries answer
//! with.
//!
//! Who gets which credentials:
//! - The request's credentials are for one registry: `server_address` when
//!   set (as containerd reads it), else the registry the image name names as
//!   Docker reads it (a short name names `docker.io`, which is where the
//!   kubelet looked its credentials up). Every other endpoint of the pull,
//!   the other registries a short name is searched in and mirrors on other
//!   hosts, gets the auth file's entry for its own location instead
//!   (containers/image does the same for mirrors; CRI-O sends the request's
//!   credentials to every short-name candidate, which we do not).
//! - Auth file entries match by exact `host[:port]`, then by whole
//!   `/`-separated path components (`host/ns` covers `host/ns/app`, not
//!   `host/nsx`); the most specific entry wins.
//! - Credentials never leave over plain HTTP to a host not marked insecure:
//!   a registry is spoken to over HTTP only when it is insecure, a token
//!   realm gets them over HTTPS (any host, as Docker Hub's) or over HTTP on
//!   an insecure host only, and a redirect never carries them along.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::reference::{DOCKER_HUB, Reference, is_short_name};

/// Base64 as auth files and AuthConfig carry it, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Largest auth file read, to bound work on a hostile file.
const MAX_AUTH_FILE: u64 = 4 << 20;
/// Longest `WWW-Authenticate` value parsed.
const MAX_CHALLENGE: usize = 8192;

/// What a pull presents to a registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials: anonymous pulls, or a token service that grants them.
    #[default]
    Anonymous,
    /// User name and password, sent as basic auth or to a token service.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the token service.
    IdentityToken(String),
    /// A bearer token sent to the registry as it is.
    RegistryToken(String),
}

/// Secrets stay out of logs: only the kind and the user name are shown.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The auth file exists but cannot be read, or is too large.
    #[error("auth file {0}")]
    File(#[from] crate::files::FileError),
    /// The auth file is not the auth.json format.
    #[error("auth file {source_name}: {detail}")]
    Format {
        /// The file (or another name of the text).
        source_name: String,
        /// What is wrong.
        detail: String,
    },
    /// One entry of `auths` is unusable.
    #[error("auth file {source_name}: auths {key:?}: {reason}")]
    Entry {
        /// The file.
        source_name: String,
        /// The entry's key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The CRI AuthConfig is unusable.
    #[error("auth config: {0}")]
    AuthConfig(&'static str),
}

/// The credentials a PullImage request brought, and the registry they are
/// for. They go to that registry only: not to the other registries a short
/// name is searched in, nor to mirrors on other hosts (containers/image
/// drops a request's credentials for a mirror whose host differs from the
/// image's, and looks the mirror's own up in the auth file instead).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestCredentials {
    /// What to present.
    pub credentials: Credentials,
    /// The AuthConfig's `server_address`, normalised like an auth.json key
    /// (`host[:port][/path]`, Docker Hub's host names as `docker.io`). None:
    /// the credentials are for the registry the image name names.
    pub server: Option<String>,
}

impl RequestCredentials {
    /// Credentials for `server_address` (empty: for the image's registry).
    pub fn new(credentials: Credentials, server_address: &str) -> Result<Self, AuthError> {
        let server = match server_address.trim() {
            "" => None,
            address => {
                let (key, _) = normalise_key(address)
                    .ok_or(AuthError::AuthConfig("server_address names no registry"))?;
                // Docker reads `host/v1/` and `host/v2/` as the host.
                let key = key
                    .strip_suffix("/v1")
                    .or_else(|| key.strip_suffix("/v2"))
                    .map(str::to_string)
                    .unwrap_or(key);
                Some(key)
            }
        };
        Ok(Self {
            credentials,
            server,
        })
    }

    /// The credentials to present to `endpoint` (a registry location or a
    /// mirror) while pulling `name` as the request spelt it; None when they
    /// are not for that endpoint. Without `server_address` they are for the
    /// registry `name` names as Docker reads it, the registry whose
    /// credentials the kubelet looked up: a short name names `docker.io`
    /// (`busybox` is `docker.io/library/busybox`), whatever registries
    /// registries.conf then searches.
    pub fn for_endpoint(&self, name: &str, endpoint: &Reference) -> Option<&Credentials> {
        let scope = match &self.server {
            Some(server) => server.clone(),
            None if is_short_name(name) => DOCKER_HUB.to_string(),
            None => Reference::parse(name).ok()?.registry,
        };
        let full = format!("{}/{}", endpoint.registry, endpoint.repository);
        let covered = full
            .strip_prefix(scope.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        covered.then_some(&self.credentials)
    }

    /// A digest telling credentials apart without holding them (pulls with
    /// different credentials must not share a download): SHA-256 under a
    /// random per-process salt, so a fingerprint that leaks gives no way to
    /// test password guesses offline.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(process_salt());
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        match &self.credentials {
            Credentials::Anonymous => field(b"anonymous"),
            Credentials::Basic { username, password } => {
                field(b"basic");
                field(username.as_bytes());
                field(password.as_bytes());
            }
            Credentials::IdentityToken(t) => {
                field(b"identity");
                field(t.as_bytes());
            }
            Credentials::RegistryToken(t) => {
                field(b"registry");
                field(t.as_bytes());
            }
        }
        field(self.server.as_deref().unwrap_or("").as_bytes());
        hasher.finalize().into()
    }
}

/// 256 random bits per process, from the OS-seeded keys of std's hasher.
fn process_salt() -> &'static [u8; 32] {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    SALT.get_or_init(|| {
        let state = std::hash::RandomState::new();
        let mut salt = [0u8; 32];
        for (i, chunk) in salt.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&state.hash_one(i).to_le_bytes());
        }
        salt
    })
}

impl Credentials {
    /// Credentials from the CRI AuthConfig fields, or None when they carry
    /// none. The most direct form wins: a registry token, then an identity
    /// token, then user name and password, then `auth` (base64 of
    /// `user:password`). Which registry they are for is
    /// [`RequestCredentials`]'s business.
    pub fn from_auth_config(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Option<Credentials>, AuthError> {
        if !registry_token.is_empty() {
            return Ok(Some(Credentials::RegistryToken(registry_token.into())));
        }
        if !identity_token.is_empty() {
            return Ok(Some(Credentials::IdentityToken(identity_token.into())));
        }
        if !username.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: username.into(),
                password: password.into(),
            }));
        }
        if !password.is_empty() {
            return Err(AuthError::AuthConfig("password given without username"));
        }
        if !auth.is_empty() {
            return decode_basic(auth).map(Some).map_err(AuthError::AuthConfig);
        }
        Ok(None)
    }
}

/// Decodes `base64(user:password)`.
fn decode_basic(auth: &str) -> Result<Credentials, &'static str> {
    let bytes = BASE64
        .decode(auth.trim())
        .map_err(|_| "auth is not valid base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "auth is not UTF-8")?;
    match text.split_once(':') {
        Some((username, password)) if !username.is_empty() => Ok(Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }),
        _ => Err("auth is not base64 of user:password"),
    }
}

/// Credentials by registry and repository, from an auth file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFile {
    /// Normalised key (`host[/path]`) to its credentials and whether the key
    /// was written in the legacy URL style.
    entries: BTreeMap<String, (Credentials, bool)>,
}

#[derive(serde::Deserialize)]
struct AuthJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

impl AuthFile {
    /// Reads an auth file; a missing file holds no credentials, as in the
    /// containers tools.
    pub fn load(path: &Path) -> Result<AuthFile, AuthError> {
        match crate::files::read_text_if_present(path, MAX_AUTH_FILE)? {
            Some(text) => AuthFile::parse(&text, &path.display().to_string()),
            None => Ok(AuthFile::default()),
        }
    }

    /// Parses auth.json text; `source_name` names it in errors. `credHelpers`
    /// and other keys are ignored; entries without credentials are skipped.
    pub fn parse(text: &str, source_name: &str) -> Result<AuthFile, AuthError> {
        let json: AuthJson = serde_json::from_str(text).map_err(|e| AuthError::Format {
            source_name: source_name.into(),
            detail: e.to_string(),
        })?;
        let mut entries = BTreeMap::new();
        for (key, entry) in json.auths {
            let entry_error = |reason| AuthError::Entry {
                source_name: source_name.into(),
                key: key.clone(),
                reason,
            };
            let credentials = if !entry.identitytoken.is_empty() {
                Credentials::IdentityToken(entry.identitytoken)
            } else if !entry.auth.is_empty() {
                decode_basic(&entry.auth).map_err(entry_error)?
            } else {
                continue;
            };
            let (normalised, legacy) =
                normalise_key(&key).ok_or_else(|| entry_error("not a registry"))?;
            // A plain key wins over a legacy URL key for the same registry.
            let replace = match entries.get(&normalised) {
                None => true,
                Some((_, existing_legacy)) => *existing_legacy && !legacy,
            };
            if replace {
                entries.insert(normalised, (credentials, legacy));
            }
        }
        Ok(AuthFile { entries })
    }

    /// The credentials for `repository` on `registry` (both as in a
    /// normalised [`crate::reference::Reference`]): the most specific key
    /// wins (`host/ns/repo`, then `host/ns`, then `host`); Anonymous when
    /// none matches.
    pub fn lookup(&self, registry: &str, repository: &str) -> Credentials {
        let mut key = format!("{registry}/{repository}");
        loop {
            if let Some((credentials, _)) = self.entries.get(&key) {
                return credentials.clone();
            }
            match key.rfind('/') {
                Some(i) => key.truncate(i),
                None => return Credentials::Anonymous,
            }
        }
    }
}

/// A key as it is looked up, and whether it was a legacy URL key.
/// `https://index.docker.io/v1/` style keys name only their host; Docker
/// Hub's host names all map to `docker.io`.
fn normalise_key(key: &str) -> Option<(String, bool)> {
    let (rest, legacy) = match key.split_once("://") {
        Some((_, rest)) => (rest.split('/').next().unwrap_or(""), true),
        None => (key.trim_end_matches('/'), false),
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    };
    Some((
        match path {
            Some(p) => format!("{host}/{p}"),
            None => host.to_string(),
        },
        legacy,
    ))
}

/// A registry's `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Answer with basic auth.
    Basic {
        /// The protection space, if given.
        realm: Option<String>,
    },
    /// Fetch a bearer token from `realm`.
    Bearer {
        /// The token service URL.
        realm: String,
        /// The `service` parameter for the token request.
        service: Option<String>,
        /// The `scope` parameter for the token request.
        scope: Option<String>,
    },
}

impl Challenge {
    /// The first Basic or Bearer challenge of a `WWW-Authenticate` value
    /// (schemes are case-insensitive, parameter values may be quoted and
    /// hold commas and escaped quotes); None when there is none usable, or
    /// a Bearer challenge lacks its realm.
    pub fn parse(header: &str) -> Option<Challenge> {
        if header.len() > MAX_CHALLENGE {
            return None;
        }
        parse_challenges(header)?
            .into_iter()
            .find_map(|(scheme, params)| {
                let param = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                if scheme.eq_ignore_ascii_case("basic") {
                    Some(Challenge::Basic {
                        realm: param("realm"),
                    })
                } else if scheme.eq_ignore_ascii_case("bearer") {
                    Some(Challenge::Bearer {
                        realm: param("realm").filter(|r| !r.is_empty())?,
                        service: param("service"),
                        scope: param("scope"),
                    })
                } else {
                    None
                }
            })
    }
}

type Params = Vec<(String, String)>;

/// Splits a `WWW-Authenticate` value into challenges (RFC 9110 section
/// 11.6.1): `scheme [param=value *("," param=value)] *("," challenge)`.
/// None when the syntax is broken.
fn parse_challenges(header: &str) -> Option<Vec<(String, Params)>> {
    let mut cursor = Cursor { rest: header };
    let mut challenges: Vec<(String, Params)> = Vec::new();
    loop {
        cursor.skip(|c| c == ',' || c.is_ascii_whitespace());
        if cursor.rest.is_empty() {
            return Some(challenges);
        }
        let first = cursor.token()?;
        cursor.skip(|c| c == ' ' || c == '\t');
        if cursor.rest.starts_with('=') {
            // A parameter of the current challenge.
            cursor.rest = &cursor.rest[1..];
            cursor.skip(|c| c == ' ' || c == '\t');
            let value = cursor.value()?;
            challenges.last_mut()?.1.push((first.to_string(), value));
        } else {
            challenges.push((first.to_string(), Vec::new()));
        }
    }
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip(&mut self, f: impl Fn(char) -> bool) {
        self.rest = self.rest.trim_start_matches(f);
    }

    /// An RFC 9110 token (scheme or parameter name; token68 is not used by
    /// registries and fails the parse).
    fn token(&mut self) -> Option<&'a str> {
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token)
    }

    /// A token or a quoted string with backslash escapes.
    fn value(&mut self) -> Option<String> {
        let Some(quoted) = self.rest.strip_prefix('"') else {
            return self.token().map(str::to_string);
        };
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &quoted[i + 1..];
                    return Some(out);
                }
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auth_config_precedence() {
        let auth = b64("bob:secret");
        let from = |u, p, a: &str, i, r| Credentials::from_auth_config(u, p, a, i, r).unwrap();
        assert_eq!(from("", "", "", "", ""), None);
        assert_eq!(
            from("u", "p", &auth, "id", "reg"),
            Some(Credentials::RegistryToken("reg".into()))
        );
        assert_eq!(
            from("u", "p", &auth, "id", ""),
            Some(Credentials::IdentityToken("id".into()))
        );
        assert_eq!(from("u", "p", &auth, "", ""), Some(basic("u", "p")));
        assert_eq!(from("", "", &auth, "", ""), Some(basic("bob", "secret")));
        // Unpadded base64 and a password holding ':' work.
        let unpadded = b64("a:b:c").trim_end_matches('=').to_string();
        assert_eq!(from("", "", &unpadded, "", ""), Some(basic("a", "b:c")));
    }

    #[test]
    fn auth_config_errors() {
        let err = |a: &str| {
            Credentials::from_auth_config("", "", a, "", "")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("!!!"), "auth config: auth is not valid base64");
        assert_eq!(
            err(&b64("nocolon")),
            "auth config: auth is not base64 of user:password"
        );
        assert_eq!(
            err(&b64(":pw")),
            "auth config: auth is not base64 of user:password"
        );
        assert_eq!(
            err(&base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'x'])),
            "auth config: auth is not UTF-8"
        );
        assert!(Credentials::from_auth_config("", "pw", "", "", "").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!(
            "{:?} {:?} {:?}",
            basic("bob", "hunter2"),
            Credentials::IdentityToken("tok1".into()),
            Credentials::RegistryToken("tok2".into())
        );
        assert!(shown.contains("bob"));
        for secret in ["hunter2", "tok1", "tok2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    fn request(server_address: &str) -> RequestCredentials {
        RequestCredentials::new(basic("u", "p"), server_address).unwrap()
    }

    #[test]
    fn server_address_forms() {
        assert_eq!(request("").server, None);
        assert_eq!(request("  ").server, None);
        for (address, server) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("quay.io", "quay.io"),
            ("quay.io/team/", "quay.io/team"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
            ("127.0.0.1:5000/v2/", "127.0.0.1:5000"),
            ("127.0.0.1:5000/v1", "127.0.0.1:5000"),
        ] {
            assert_eq!(
                request(address).server.as_deref(),
                Some(server),
                "{address}"
            );
        }
        let err = RequestCredentials::new(basic("u", "p"), "https:///x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth config: server_address names no registry"
        );
    }

    #[test]
    fn request_credentials_go_to_their_registry_only() {
        let at = |s: &str| Reference::parse(s).unwrap();
        let gets = |req: &RequestCredentials, name: &str, endpoint: &str| {
            req.for_endpoint(name, &at(endpoint)).is_some()
        };
        let plain = request("");
        // A qualified name: its registry, whatever the repository.
        assert!(gets(&plain, "quay.io/a/b:1", "quay.io/a/b:1"));
        assert!(gets(&plain, "quay.io/a/b:1", "quay.io/mirror/a/b:1"));
        assert!(!gets(&plain, "quay.io/a/b:1", "mirror.local/a/b:1"));
        assert!(!gets(&plain, "quay.io/a/b:1", "quay.io.evil/a/b:1"));
        assert!(!gets(&plain, "localhost:5000/a", "localhost:5001/a"));
        assert!(!gets(&plain, "localhost:5000/a", "localhost/a"));
        assert!(gets(
            &plain,
            "index.docker.io/library/busybox",
            "docker.io/library/busybox"
        ));
        // A short name names docker.io, as the kubelet read it.
        assert!(gets(&plain, "busybox", "docker.io/library/busybox"));
        assert!(!gets(&plain, "busybox", "quay.io/library/busybox"));
        assert!(!gets(&plain, "team/app:1", "registry.local/team/app:1"));
        // server_address decides, also against the name's own registry.
        let local = request("registry.local");
        assert!(gets(&local, "team/app:1", "registry.local/team/app:1"));
        assert!(!gets(&local, "team/app:1", "docker.io/team/app:1"));
        assert!(!gets(&local, "quay.io/team/app", "quay.io/team/app"));
        // A namespace in server_address limits them to it.
        let team = request("registry.local/team");
        assert!(gets(&team, "team/app", "registry.local/team/app"));
        assert!(!gets(&team, "teamx/app", "registry.local/teamx/app"));
        assert!(!gets(&team, "other/app", "registry.local/other/app"));
    }

    #[test]
    fn fingerprints_tell_credentials_apart_without_holding_them() {
        let fp = |c: Credentials, server: &str| {
            RequestCredentials::new(c, server).unwrap().fingerprint()
        };
        let one = fp(basic("alice", "hunter2"), "");
        assert_eq!(one, fp(basic("alice", "hunter2"), ""));
        let others = [
            fp(basic("alice", "hunter3"), ""),
            fp(basic("alice", "hunter2"), "quay.io"),
            fp(basic("alicehunter", "2"), ""),
            fp(Credentials::IdentityToken("hunter2".into()), ""),
            fp(Credentials::RegistryToken("hunter2".into()), ""),
            fp(Credentials::Anonymous, ""),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(&one, other, "{i}");
        }
        // Salted: not the plain digest of the secret.
        use sha2::Digest;
        assert_ne!(one.as_slice(), sha2::Sha256::digest(b"hunter2").as_slice());
    }

    #[test]
    fn auth_file_most_specific_key_wins() {
        let text = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/team": {{"auth": "{}"}},
                "quay.io/team/app": {{"identitytoken": "refresh"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "localhost:5000": {{"auth": "{}"}}
            }}, "credHelpers": {{"gcr.io": "gcr"}}}}"#,
            b64("host:1"),
            b64("ns:2"),
            b64("hub:3"),
            b64("local:4"),
        );
        let f = AuthFile::parse(&text, "auth.json").unwrap();
        assert_eq!(
            f.lookup("quay.io", "team/app"),
            Credentials::IdentityToken("refresh".into())
        );
        assert_eq!(f.lookup("quay.io", "team/app2"), basic("ns", "2"));
        assert_eq!(f.lookup("quay.io", "team/sub/x"), basic("ns", "2"));
        assert_eq!(f.lookup("quay.io", "teamx/app"), basic("host", "1"));
        assert_eq!(f.lookup("docker.io", "library/busybox"), basic("hub", "3"));
        assert_eq!(f.lookup("localhost:5000", "a"), basic("local", "4"));
        assert_eq!(f.lookup("localhost", "a"), Credentials::Anonymous);
        // Exact host and port: no other port, no prefix of a host name.
        assert_eq!(f.lookup("localhost:50001", "a"), Credentials::Anonymous);
        assert_eq!(f.lookup("localhost:500", "a"), Credentials::Anonymous);
        assert_eq!(f.lookup("quay.i", "team/app"), Credentials::Anonymous);
        assert_eq!(f.lookup("quay.io.evil", "team/app"), Credentials::Anonymous);
    }

    #[test]
    fn plain_key_beats_legacy_key() {
        for order in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("docker.io", "https://index.docker.io/v1/"),
        ] {
            let text = format!(
                r#"{{"auths": {{"{}": {{"auth": "{}"}}, "{}": {{"auth": "{}"}}}}}}"#,
                order.0,
                b64(if order.0 == "docker.io" {
                    "plain:p"
                } else {
                    "legacy:l"
                }),
                order.1,
                b64(if order.1 == "docker.io" {
                    "plain:p"
                } else {
                    "legacy:l"
                }),
            );
            let f = AuthFile::parse(&text, "a").unwrap();
            assert_eq!(
                f.lookup("docker.io", "library/x"),
                basic("plain", "p"),
                "{text}"
            );
        }
        assert_eq!(
            normalise_key("registry-1.docker.io/u"),
            Some(("docker.io/u".into(), false))
        );
        assert_eq!(
            normalise_key("http://h:5000/v2/"),
            Some(("h:5000".into(), true))
        );
        assert_eq!(normalise_key("https:///x"), None);
    }

    #[test]
    fn auth_file_errors_name_file_and_key() {
        let e = AuthFile::parse(
            r#"{"auths": {"quay.io": {"auth": "%%%"}}}"#,
            "/etc/auth.json",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"auth file /etc/auth.json: auths "quay.io": auth is not valid base64"#
        );
        let e = AuthFile::parse("{not json", "f").unwrap_err().to_string();
        assert!(e.starts_with("auth file f: "), "{e}");
        assert!(AuthFile::parse(r#"{"auths": []}"#, "f").is_err());
        // Empty entries and an empty file object are fine.
        let f = AuthFile::parse(r#"{"auths": {"quay.io": {}}}"#, "f").unwrap();
        assert_eq!(f.lookup("quay.io", "a"), Credentials::Anonymous);
        assert_eq!(AuthFile::parse("{}", "f").unwrap(), AuthFile::default());
    }

    #[test]
    fn auth_file_load() {
        let dir = tempfile::tempdir().unwrap();
        let missing = AuthFile::load(&dir.path().join("none.json")).unwrap();
        assert_eq!(missing, AuthFile::default());
        let path = dir.path().join("auth.json");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"h.io": {{"auth": "{}"}}}}}}"#, b64("u:p")),
        )
        .unwrap();
        assert_eq!(
            AuthFile::load(&path).unwrap().lookup("h.io", "r"),
            basic("u", "p")
        );
        // A directory is not readable as a file.
        assert!(matches!(
            AuthFile::load(dir.path()),
            Err(AuthError::File(crate::files::FileError::Read { .. }))
        ));
    }

    #[test]
    fn bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        // Case-insensitive scheme and names, spaces, unquoted values, escapes.
        let c = Challenge::parse(r#"bearer  REALM = "https://a/t\"x" , service=reg"#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://a/t\"x".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn basic_and_multiple_challenges() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="crio-test""#),
            Some(Challenge::Basic {
                realm: Some("crio-test".into())
            })
        );
        assert_eq!(
            Challenge::parse("Basic"),
            Some(Challenge::Basic { realm: None })
        );
        // An unknown scheme first is skipped for the next usable one.
        assert_eq!(
            Challenge::parse(
                r#"Negotiate, Digest realm="x", nonce="a,b", Bearer realm="https://t""#
            ),
            Some(Challenge::Bearer {
                realm: "https://t".into(),
                service: None,
                scope: None,
            })
        );
    }

    #[test]
    fn hostile_challenges() {
        for h in [
            "",
            "   ",
            "Digest realm=x",
            "Bearer",
            "Bearer realm=\"\"",
            "Bearer service=x",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"trailing backslash\\",
            "=x",
            "Bearer realm=",
            "Bearer realm=\"a\" junk=",
            "Bearer realm=\"a\" ,, ,",
            "\u{0}\u{1}",
            "Bearer rëalm=x",
        ] {
            let parsed = Challenge::parse(h);
            let ok = h == "Bearer realm=\"a\" ,, ,";
            assert_eq!(parsed.is_some(), ok, "{h:?}: {parsed:?}");
        }
        let huge = format!("Bearer realm=\"{}\"", "a".repeat(MAX_CHALLENGE));
        assert_eq!(Challenge::parse(&huge), None);
    }
}
