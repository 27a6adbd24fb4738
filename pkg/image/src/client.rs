//! A small, blocking client of the OCI distribution API: manifests and
//! blobs, basic and bearer authentication, digest and size checks while the
//! bytes stream. Pulls run it on blocking threads, one per layer.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::auth::{Challenge, Credentials};
use crate::manifest::MAX_DOCUMENT;

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry refused our credentials (or wants some).
    #[error("{url}: unauthorized: {detail}")]
    Unauthorized {
        /// The request.
        url: String,
        /// What the registry said.
        detail: String,
    },
    /// The manifest or blob does not exist.
    #[error("{url}: not found")]
    NotFound {
        /// The request.
        url: String,
    },
    /// Another HTTP error status.
    #[error("{url}: HTTP {code}: {detail}")]
    Status {
        /// The request.
        url: String,
        /// The status code.
        code: u16,
        /// The start of the body.
        detail: String,
    },
    /// Connection, TLS or timeout failure.
    #[error("{url}: {detail}")]
    Transport {
        /// The request.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// Content that does not match its digest or size.
    #[error("{what}: {detail}")]
    Verify {
        /// The manifest or blob.
        what: String,
        /// The mismatch.
        detail: String,
    },
    /// The pull was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A token realm credentials cannot be sent to.
#[derive(Debug, thiserror::Error)]
enum BadRealm {
    /// Not a URL.
    #[error("token realm {realm:?}: {source}")]
    Url {
        /// The realm.
        realm: String,
        /// Why.
        source: Box<ureq::Error>,
    },
    /// Neither http nor https.
    #[error("token realm {realm:?}: scheme {scheme:?} is not http or https")]
    Scheme {
        /// The realm.
        realm: String,
        /// Its scheme.
        scheme: String,
    },
}

impl ClientError {
    /// Whether another mirror or search registry may still succeed.
    pub fn try_next(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound { .. }
                | ClientError::Transport { .. }
                | ClientError::Status { .. }
        )
    }
}

/// One registry endpoint as a pull uses it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP allowed (registries.conf `insecure` or `insecure_registries`).
    pub insecure: bool,
    /// Credentials for this registry.
    pub credentials: Credentials,
}

impl Endpoint {
    fn url(&self, path: &str) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}{path}", self.host)
    }
}

/// Which hosts may be sent credentials over plain HTTP.
type InsecureHosts = dyn Fn(&str) -> bool + Send + Sync;

/// Shared state of a pull: bearer tokens, the cancel flag, and which hosts
/// are marked insecure.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    tokens: Arc<Mutex<HashMap<String, String>>>,
    cancel: Arc<AtomicBool>,
    insecure_hosts: Arc<InsecureHosts>,
}

/// How a challenge was answered.
struct Answer {
    /// The Authorization value.
    value: String,
    /// Why the credentials were not presented, if they were not.
    withheld: Option<String>,
}

/// The Authorization value to send for a challenge, or to start with.
fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

impl Client {
    /// A client whose reads time out after `progress_timeout` without data
    /// (no timeout when `None`), and which stops when `cancel` is set.
    pub fn new(progress_timeout: Option<Duration>, cancel: Arc<AtomicBool>) -> Self {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .user_agent(concat!("crio-rs/", env!("CARGO_PKG_VERSION")))
            .redirects(5)
            // A redirect (a blob on a CDN, or to plain HTTP) never carries
            // the Authorization header along.
            .redirect_auth_headers(ureq::RedirectAuthHeaders::Never);
        if let Some(t) = progress_timeout {
            builder = builder.timeout_read(t);
        }
        Self {
            agent: builder.build(),
            tokens: Arc::default(),
            cancel,
            insecure_hosts: Arc::new(|_| false),
        }
    }

    /// Names the hosts (`host[:port]`) marked insecure in registries.conf
    /// or `insecure_registries`: only those get credentials over plain
    /// HTTP. Without it no host does.
    pub fn with_insecure_hosts(mut self, f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.insecure_hosts = Arc::new(f);
        self
    }

    fn check_cancel(&self) -> Result<(), ClientError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(ClientError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn token_key(ep: &Endpoint, repo: &str) -> String {
        format!("{}/{repo}", ep.host)
    }

    /// GET with authentication: a cached token first, then one retry after
    /// answering the registry's challenge.
    fn get(
        &self,
        ep: &Endpoint,
        repo: &str,
        path: &str,
        accept: &str,
    ) -> Result<ureq::Response, ClientError> {
        self.check_cancel()?;
        let url = ep.url(path);
        let cached = self.tokens.lock().get(&Self::token_key(ep, repo)).cloned();
        let mut auth = cached.or_else(|| match &ep.credentials {
            Credentials::RegistryToken(t) => Some(format!("Bearer {t}")),
            _ => None,
        });
        let mut withheld = None;
        for attempt in 0..2 {
            let mut req = self.agent.get(&url).set("Accept", accept);
            if let Some(a) = &auth {
                req = req.set("Authorization", a);
            }
            match req.call() {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if attempt == 0 => {
                    let header = resp.header("WWW-Authenticate").unwrap_or("").to_string();
                    let answer = self.answer(ep, repo, &url, &header)?;
                    self.tokens
                        .lock()
                        .insert(Self::token_key(ep, repo), answer.value.clone());
                    auth = Some(answer.value);
                    withheld = answer.withheld;
                }
                Err(e) => return Err(with_note(status_error(&url, e), withheld.as_deref())),
            }
        }
        Err(ClientError::Unauthorized {
            url,
            detail: withheld.unwrap_or_else(|| "credentials rejected".into()),
        })
    }

    /// Whether credentials may go to the token service at `realm`: over
    /// HTTPS always (Docker Hub's realm is another host), over plain HTTP
    /// only to a host marked insecure; never to another scheme.
    fn realm_takes_credentials(&self, realm: &str) -> Result<bool, BadRealm> {
        let url = self
            .agent
            .get(realm)
            .request_url()
            .map_err(|e| BadRealm::Url {
                realm: realm.to_string(),
                source: Box::new(e),
            })?;
        match url.scheme() {
            "https" => Ok(true),
            "http" => {
                let host = match url.port() {
                    Some(port) => format!("{}:{port}", url.host()),
                    None => url.host().to_string(),
                };
                Ok((self.insecure_hosts)(&host))
            }
            other => Err(BadRealm::Scheme {
                realm: realm.to_string(),
                scheme: other.to_string(),
            }),
        }
    }

    /// The Authorization value answering a `WWW-Authenticate` challenge.
    fn answer(
        &self,
        ep: &Endpoint,
        repo: &str,
        url: &str,
        header: &str,
    ) -> Result<Answer, ClientError> {
        let unauthorized = |detail: String| ClientError::Unauthorized {
            url: url.to_string(),
            detail,
        };
        match Challenge::parse(header) {
            // The endpoint itself is HTTPS, or marked insecure.
            Some(Challenge::Basic { .. }) => match &ep.credentials {
                Credentials::Basic { username, password } => Ok(Answer {
                    value: basic(username, password),
                    withheld: None,
                }),
                _ => Err(unauthorized("the registry requires credentials".into())),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{repo}:pull"));
                let mut credentials = &ep.credentials;
                let mut withheld = None;
                if !matches!(credentials, Credentials::Anonymous)
                    && !self
                        .realm_takes_credentials(&realm)
                        .map_err(|e| unauthorized(e.to_string()))?
                {
                    // Ask anonymously: a public image still pulls.
                    credentials = &Credentials::Anonymous;
                    withheld = Some(format!(
                        "credentials not sent to token realm {realm:?}: plain HTTP to a host not marked insecure"
                    ));
                }
                let token = self
                    .bearer_token(credentials, &realm, service.as_deref(), &scope)
                    .map_err(|e| with_note(e, withheld.as_deref()))?;
                Ok(Answer {
                    value: format!("Bearer {token}"),
                    withheld,
                })
            }
            None => Err(unauthorized(format!("unsupported challenge {header:?}"))),
        }
    }

    /// Fetches a bearer token from the registry's token service.
    fn bearer_token(
        &self,
        credentials: &Credentials,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ClientError> {
        let transport = |e: ureq::Error| status_error(realm, e);
        let resp = match credentials {
            Credentials::IdentityToken(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "crio-rs"),
                    ("scope", scope),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                self.agent.post(realm).send_form(&form).map_err(transport)?
            }
            creds => {
                let mut req = self.agent.get(realm).query("scope", scope);
                if let Some(s) = service {
                    req = req.query("service", s);
                }
                if let Credentials::Basic { username, password } = creds {
                    req = req.set("Authorization", &basic(username, password));
                }
                req.call().map_err(transport)?
            }
        };
        let body: serde_json::Value = read_json(resp, realm)?;
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unauthorized {
                url: realm.to_string(),
                detail: "token service answered without a token".into(),
            })
    }

    /// A manifest by tag or digest: its bytes, Content-Type and digest.
    /// When `reference` is a digest the content must match it.
    pub fn manifest(
        &self,
        ep: &Endpoint,
        repo: &str,
        reference: &str,
        accept: &str,
    ) -> Result<(Vec<u8>, Option<String>, String), ClientError> {
        let resp = self.get(
            ep,
            repo,
            &format!("/v2/{repo}/manifests/{reference}"),
            accept,
        )?;
        let content_type = resp.header("Content-Type").map(str::to_string);
        let what = format!("manifest {}/{repo}:{reference}", ep.host);
        let body = read_bounded(resp, MAX_DOCUMENT, &what)?;
        let digest = sha256(&body);
        if reference.contains(':') && reference != digest {
            return Err(ClientError::Verify {
                what,
                detail: format!("content digest {digest} differs"),
            });
        }
        Ok((body, content_type, digest))
    }

    /// A small blob (a config) read whole and checked.
    pub fn document(
        &self,
        ep: &Endpoint,
        repo: &str,
        digest: &str,
        size: u64,
    ) -> Result<Vec<u8>, ClientError> {
        if size > MAX_DOCUMENT {
            return Err(ClientError::Verify {
                what: format!("blob {digest}"),
                detail: format!("{size} bytes is too large for a config"),
            });
        }
        let mut data = Vec::new();
        self.blob(ep, repo, digest, Some(size))?
            .read_to_end(&mut data)
            .map_err(|e| read_error(e, &format!("blob {digest}")))?;
        Ok(data)
    }

    /// A blob as a stream that fails if it is longer than `size`, or if at
    /// its end the size (when known) or digest differ.
    pub fn blob(
        &self,
        ep: &Endpoint,
        repo: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<BlobReader, ClientError> {
        let resp = self.get(ep, repo, &format!("/v2/{repo}/blobs/{digest}"), "*/*")?;
        Ok(BlobReader {
            inner: resp.into_reader(),
            hasher: Sha256::new(),
            expected: digest.to_string(),
            size,
            read: 0,
            cancel: self.cancel.clone(),
        })
    }
}

/// An Unauthorized error with the reason credentials were withheld added.
fn with_note(e: ClientError, note: Option<&str>) -> ClientError {
    match (e, note) {
        (ClientError::Unauthorized { url, detail }, Some(note)) => ClientError::Unauthorized {
            url,
            detail: format!("{detail} ({note})"),
        },
        (e, _) => e,
    }
}

/// The error carried in io::Error by [`BlobReader`], recovered.
pub fn read_error(e: io::Error, what: &str) -> ClientError {
    if e.to_string() == CANCELLED_TEXT {
        return ClientError::Cancelled;
    }
    match e.kind() {
        io::ErrorKind::InvalidData => ClientError::Verify {
            what: what.to_string(),
            detail: e.to_string(),
        },
        _ => ClientError::Transport {
            url: what.to_string(),
            detail: e.to_string(),
        },
    }
}

/// The message of the io::Error a cancelled read returns.
pub const CANCELLED_TEXT: &str = "pull cancelled";

/// A verifying blob stream.
pub struct BlobReader {
    inner: Box<dyn Read + Send + Sync>,
    hasher: Sha256,
    expected: String,
    size: Option<u64>,
    read: u64,
    cancel: Arc<AtomicBool>,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            // Not `Interrupted`: readers retry on that.
            return Err(io::Error::other(CANCELLED_TEXT));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(size) = self.size.filter(|s| self.read > *s) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than its declared {size} bytes",
                    self.expected
                ),
            ));
        }
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            if let Some(size) = self.size.filter(|s| self.read != *s) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} ended after {} of {size} bytes",
                        self.expected, self.read
                    ),
                ));
            }
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob digest mismatch: expected {}, got {actual}",
                        self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn status_error(url: &str, e: ureq::Error) -> ClientError {
    match e {
        ureq::Error::Status(code, resp) => {
            let mut detail = String::new();
            let _ = resp.into_reader().take(512).read_to_string(&mut detail);
            let detail = detail.trim().to_string();
            match code {
                401 | 403 => ClientError::Unauthorized {
                    url: url.to_string(),
                    detail,
                },
                404 => ClientError::NotFound {
                    url: url.to_string(),
                },
                _ => ClientError::Status {
                    url: url.to_string(),
                    code,
                    detail,
                },
            }
        }
        ureq::Error::Transport(t) => ClientError::Transport {
            url: url.to_string(),
            detail: t.to_string(),
        },
    }
}

fn read_bounded(resp: ureq::Response, limit: u64, what: &str) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    resp.into_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| read_error(e, what))?;
    if body.len() as u64 > limit {
        return Err(ClientError::Verify {
            what: what.to_string(),
            detail: format!("larger than {limit} bytes"),
        });
    }
    Ok(body)
}

fn read_json(resp: ureq::Response, url: &str) -> Result<serde_json::Value, ClientError> {
    let body = read_bounded(resp, 1 << 20, url)?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Transport {
        url: url.to_string(),
        detail: format!("invalid JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{Peer, Reply};

    fn basic_creds() -> Credentials {
        Credentials::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        }
    }

    fn client() -> Client {
        Client::new(Some(Duration::from_secs(10)), Arc::default())
    }

    /// A registry that wants a bearer token from `realm`, then serves an
    /// empty manifest.
    fn bearer_registry(realm: String) -> Peer {
        Peer::start(move |seen| {
            if seen.authorization.as_deref() == Some("Bearer tok") {
                Reply::status(200).body("{}")
            } else {
                Reply::status(401).header(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="{realm}",service="reg""#),
                )
            }
        })
    }

    fn token_service() -> Peer {
        Peer::start(|_| Reply::status(200).body(r#"{"token":"tok"}"#))
    }

    #[test]
    fn plain_http_realm_gets_no_credentials() {
        let realm = token_service();
        let registry = bearer_registry(format!("http://{}/token", realm.host()));
        for credentials in [
            basic_creds(),
            Credentials::IdentityToken("refresh-secret".into()),
        ] {
            let ep = Endpoint {
                host: registry.host(),
                insecure: true,
                credentials,
            };
            client().manifest(&ep, "app", "1", "*/*").unwrap();
        }
        let seen = realm.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for s in seen {
            assert_eq!(s.method, "GET", "{s:?}");
            assert_eq!(s.authorization, None, "{s:?}");
            assert!(!s.body.contains("refresh-secret"), "{s:?}");
        }
    }

    #[test]
    fn insecure_realm_host_gets_credentials() {
        let realm = token_service();
        let realm_host = realm.host();
        let registry = bearer_registry(format!("http://{realm_host}/token"));
        let ep = Endpoint {
            host: registry.host(),
            insecure: true,
            credentials: basic_creds(),
        };
        client()
            .with_insecure_hosts(move |h| h == realm_host)
            .manifest(&ep, "app", "1", "*/*")
            .unwrap();
        assert_eq!(realm.authorizations(), ["Basic YWxpY2U6czNjcmV0"]);
    }

    #[test]
    fn withheld_credentials_are_named_in_the_error() {
        // A token service that refuses anonymous requests.
        let realm = Peer::start(|s| match s.authorization {
            None => Reply::status(401),
            Some(_) => Reply::status(200).body(r#"{"token":"tok"}"#),
        });
        let registry = bearer_registry(format!("http://{}/token", realm.host()));
        let ep = Endpoint {
            host: registry.host(),
            insecure: true,
            credentials: basic_creds(),
        };
        let err = client().manifest(&ep, "app", "1", "*/*").unwrap_err();
        assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("credentials not sent to token realm"),
            "{err}"
        );
        assert_eq!(realm.authorizations(), Vec::<String>::new());
    }

    #[test]
    fn realm_schemes() {
        let c = client().with_insecure_hosts(|h| h == "insecure.local:5000" || h == "lan.local");
        let takes = |realm: &str| c.realm_takes_credentials(realm).ok();
        assert_eq!(takes("https://auth.docker.io/token"), Some(true));
        assert_eq!(takes("https://other.host:8443/t"), Some(true));
        assert_eq!(takes("http://auth.docker.io/token"), Some(false));
        assert_eq!(takes("http://insecure.local:5000/token"), Some(true));
        assert_eq!(takes("http://insecure.local:5001/token"), Some(false));
        assert_eq!(takes("http://insecure.local/token"), Some(false));
        assert_eq!(takes("http://lan.local/token"), Some(true));
        assert_eq!(takes("HTTP://lan.local/token"), Some(true));
        // Userinfo does not change the host the request goes to.
        assert_eq!(takes("http://lan.local@evil.example/token"), Some(false));
        for bad in [
            "ftp://lan.local/token",
            "file:///etc/passwd",
            "not a url",
            "",
        ] {
            assert!(takes(bad).is_none(), "{bad:?}");
        }
        // And the pull fails naming the realm rather than sending anything.
        let registry = bearer_registry("ftp://127.0.0.1/token".into());
        let ep = Endpoint {
            host: registry.host(),
            insecure: true,
            credentials: basic_creds(),
        };
        let err = client().manifest(&ep, "app", "1", "*/*").unwrap_err();
        assert!(err.to_string().contains("not http or https"), "{err}");
    }

    #[test]
    fn redirect_to_plain_http_carries_no_credentials() {
        let target = Peer::start(|_| Reply::status(200).body("{}"));
        let location = format!("http://{}/elsewhere", target.host());
        let registry = Peer::start(move |_| Reply::status(307).header("Location", &location));
        for credentials in [basic_creds(), Credentials::RegistryToken("tok".into())] {
            let ep = Endpoint {
                host: registry.host(),
                insecure: true,
                credentials,
            };
            client().manifest(&ep, "app", "1", "*/*").unwrap();
        }
        assert_eq!(target.seen().len(), 2);
        assert_eq!(target.authorizations(), Vec::<String>::new());
        // The registry itself got the registry token.
        assert_eq!(registry.authorizations(), ["Bearer tok"]);
    }
}
