//! Pulling an image: name resolution through registries.conf, mirrors,
//! manifest and platform, trust policy, then the layers in parallel, each
//! streamed from the socket through decompression into its layer directory.
//! The image record is written last, so a pull killed half-way leaves no
//! visible image (only layers that start-up collects).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crio_storage::unpack::Limits;
use crio_storage::{Digest, ImageRecord, ImageStore, LayerStore, chain_ids};
use parking_lot::Mutex;

use crate::auth::{Credentials, RequestCredentials};
use crate::client::{Client, ClientError, Endpoint, read_error};
use crate::manifest::{self, Descriptor, Manifest, Platform};
use crate::policy::Policy;
use crate::reference::Reference;
use crate::registries::RegistriesConf;
use crate::sigstore::{SigstoreSignature, signature_tag};

/// Schema 1 manifests do not give layer sizes.
const UNKNOWN_SIZE: u64 = u64::MAX;

/// Why a pull failed. The daemon maps each kind to a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The name is not a valid image reference, or resolves to nothing.
    #[error("{0}")]
    InvalidName(String),
    /// registries.conf blocks the registry.
    #[error("{0}")]
    Blocked(String),
    /// No registry has the image.
    #[error("{0}")]
    NotFound(String),
    /// The registry wants other credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The trust policy rejects the image.
    #[error("{0}")]
    Rejected(String),
    /// The pull was cancelled or timed out.
    #[error("{0}")]
    Cancelled(String),
    /// Bad content, storage or transport failure.
    #[error("{0}")]
    Failed(String),
}

/// Everything a pull reads: configuration and stores.
pub struct Puller {
    /// Layer store.
    pub layers: LayerStore,
    /// Image records.
    pub images: Arc<ImageStore>,
    /// Limits on each layer's content.
    pub limits: Limits,
    /// Layers downloaded in parallel per pull.
    pub parallel_layers: usize,
    /// The platform whose image an index resolves to.
    pub platform: Platform,
    in_flight: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
}

/// What one pull request brings.
pub struct PullOptions<'a> {
    /// registries.conf.
    pub registries: &'a RegistriesConf,
    /// The trust policy (None: accept anything).
    pub policy: Option<&'a Policy>,
    /// Credentials of the request, presented only to the registry they are
    /// for ([`RequestCredentials::for_endpoint`]).
    pub credentials: Option<RequestCredentials>,
    /// Credentials by registry and repository (the auth file), for every
    /// endpoint the request's credentials are not for; a mirror is looked
    /// up by its own location.
    pub lookup_credentials: &'a (dyn Fn(&Reference) -> Credentials + Sync),
    /// A read that makes no progress for this long fails the pull.
    pub progress_timeout: Option<Duration>,
    /// Set to stop the pull.
    pub cancel: Arc<AtomicBool>,
    /// Keep the image from removal (the pause image).
    pub pinned: bool,
    /// Told of each layer as it is downloaded or found in the store (the
    /// daemon's metrics).
    pub on_layer: Option<&'a (dyn Fn(LayerEvent<'_>) + Sync)>,
}

/// What a pull did with one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerEvent<'a> {
    /// Downloaded: the blob's media type and size in the manifest (0 when
    /// unknown), and the bytes read from the registry.
    Fetched {
        /// Media type in the manifest ("" for schema 1).
        media_type: &'a str,
        /// Size in the manifest.
        size: u64,
        /// Bytes read.
        bytes: u64,
    },
    /// Already in the layer store: not downloaded.
    Reused {
        /// The blob's digest.
        digest: &'a str,
        /// Its size in the manifest.
        size: u64,
    },
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The outcome of finding the manifest: where it came from and what it is.
struct Found<'a> {
    /// The name the user's input resolved to (tags recorded under it).
    name: Reference,
    endpoint: Endpoint,
    /// Repository on the endpoint (a mirror may rewrite it).
    repo: String,
    top_digest: String,
    manifest: Manifest,
    /// The request's [`PullOptions::on_layer`].
    on_layer: Option<&'a (dyn Fn(LayerEvent<'_>) + Sync)>,
}

impl Puller {
    /// A puller over the stores.
    pub fn new(layers: LayerStore, images: Arc<ImageStore>) -> Self {
        Self {
            layers,
            images,
            limits: Limits::default(),
            parallel_layers: 3,
            platform: Platform::host(),
            in_flight: Mutex::default(),
        }
    }

    /// Pulls `name` and returns the stored image.
    pub fn pull(&self, name: &str, opts: &PullOptions) -> Result<ImageRecord, PullError> {
        let registries = opts.registries.clone();
        let client = Client::new(opts.progress_timeout, opts.cancel.clone())
            .with_insecure_hosts(move |host| registries.is_insecure(host));
        let found = self.find_manifest(&client, name, opts)?;
        let (config_desc, layer_descs) = match &found.manifest {
            Manifest::Image { config, layers } => (Some(config.clone()), layers.clone()),
            Manifest::Schema1 { layers, .. } => (
                None,
                layers
                    .iter()
                    .map(|d| Descriptor {
                        media_type: String::new(),
                        digest: d.clone(),
                        size: UNKNOWN_SIZE,
                        platform: None,
                    })
                    .collect(),
            ),
            Manifest::Index(_) => unreachable!("find_manifest resolves indexes"),
        };
        if let Some(policy) = opts.policy {
            self.check_policy(&client, policy, &found)?;
        }
        let fail = |e: ClientError| client_error(&found.name, e);
        let (config, chains) = match (&found.manifest, config_desc) {
            (Manifest::Schema1 { top, .. }, _) => {
                let infos = self.schema1_layers(&client, &found, &layer_descs)?;
                let diff_ids: Vec<Digest> = infos.iter().map(|l| l.diff_id.clone()).collect();
                let config = manifest::schema1_config(top, &diff_ids);
                (config, infos.into_iter().map(|l| l.chain_id).collect())
            }
            (_, Some(desc)) => {
                let data = client
                    .document(
                        &found.endpoint,
                        &found.repo,
                        desc.digest.as_str(),
                        desc.size,
                    )
                    .map_err(fail)?;
                let bad_config =
                    |e: String| PullError::Failed(format!("{}: image config: {e}", found.name));
                let config: serde_json::Value =
                    serde_json::from_slice(&data).map_err(|e| bad_config(e.to_string()))?;
                let diff_ids = diff_ids(&config).map_err(|e| bad_config(e.to_string()))?;
                if diff_ids.len() != layer_descs.len() {
                    return Err(PullError::Failed(format!(
                        "{}: config lists {} layers, manifest {}",
                        found.name,
                        diff_ids.len(),
                        layer_descs.len()
                    )));
                }
                let chains = chain_ids(&diff_ids);
                self.fetch_layers(&client, &found, &layer_descs, &diff_ids, &chains)?;
                (config, chains)
            }
            _ => unreachable!("image manifests have a config"),
        };
        let id = match &found.manifest {
            Manifest::Image { config, .. } => config.digest.clone(),
            _ => Digest::of(&serde_json::to_vec(&config).unwrap_or_default()),
        };
        let size = layer_descs
            .iter()
            .map(|d| if d.size == UNKNOWN_SIZE { 0 } else { d.size })
            .sum();
        let name = &found.name;
        let record = ImageRecord {
            id,
            repo_tags: name
                .tag
                .as_ref()
                .map(|t| format!("{}/{}:{t}", name.registry, name.repository))
                .into_iter()
                .collect(),
            repo_digests: vec![format!(
                "{}/{}@{}",
                name.registry, name.repository, found.top_digest
            )],
            size,
            layers: chains,
            config,
            pinned: opts.pinned,
            pulled_at: now_nanos(),
        };
        self.images
            .add(record)
            .map_err(|e| PullError::Failed(format!("{}: {e}", found.name)))
    }

    /// Tries each candidate name and each of its endpoints (mirrors first)
    /// until one serves the manifest; resolves an index to this platform.
    fn find_manifest<'a>(
        &self,
        client: &Client,
        name: &str,
        opts: &PullOptions<'a>,
    ) -> Result<Found<'a>, PullError> {
        let candidates = opts
            .registries
            .resolve(name)
            .map_err(|e| PullError::InvalidName(format!("image {name:?}: {e}")))?;
        let mut errors = Vec::new();
        let mut unauthorized = false;
        for candidate in candidates {
            let endpoints = opts
                .registries
                .endpoints(&candidate)
                .map_err(|e| PullError::Blocked(format!("pull {candidate}: {e}")))?;
            for ep in endpoints {
                let credentials = match opts
                    .credentials
                    .as_ref()
                    .and_then(|c| c.for_endpoint(name, &ep.reference))
                {
                    Some(from_request) => from_request.clone(),
                    None => (opts.lookup_credentials)(&ep.reference),
                };
                let endpoint = Endpoint {
                    host: ep.reference.registry.clone(),
                    insecure: ep.insecure,
                    credentials,
                };
                let repo = ep.reference.repository.clone();
                let reference = ep.reference.manifest_reference().to_string();
                match self.fetch_manifest(client, &endpoint, &repo, &reference) {
                    Ok((manifest, top_digest)) => {
                        let mut name = candidate.clone();
                        if name.tag.is_none() && name.digest.is_none() {
                            name.tag = Some("latest".into());
                        }
                        return Ok(Found {
                            name,
                            endpoint,
                            repo,
                            top_digest,
                            manifest,
                            on_layer: opts.on_layer,
                        });
                    }
                    // A registry or mirror that wants other credentials
                    // may still be followed by one that serves the image.
                    Err(e) if e.try_next() || matches!(e, ClientError::Unauthorized { .. }) => {
                        unauthorized |= matches!(e, ClientError::Unauthorized { .. });
                        errors.push(format!("{}/{repo}: {e}", endpoint.host));
                    }
                    Err(e) => return Err(client_error(&candidate, e)),
                }
            }
        }
        if unauthorized {
            Err(PullError::Unauthorized(format!(
                "pull {name:?}: {}",
                errors.join("; ")
            )))
        } else if errors.iter().all(|e| e.contains("not found")) {
            Err(PullError::NotFound(format!(
                "image {name:?} not found: {}",
                errors.join("; ")
            )))
        } else {
            Err(PullError::Failed(format!(
                "pull {name:?}: {}",
                errors.join("; ")
            )))
        }
    }

    fn fetch_manifest(
        &self,
        client: &Client,
        ep: &Endpoint,
        repo: &str,
        reference: &str,
    ) -> Result<(Manifest, String), ClientError> {
        let (body, content_type, top_digest) =
            client.manifest(ep, repo, reference, manifest::ACCEPT)?;
        let bad = |e: manifest::ManifestError| ClientError::Verify {
            what: format!("manifest {}/{repo}:{reference}", ep.host),
            detail: e.to_string(),
        };
        let mut parsed = manifest::parse(content_type.as_deref(), &body).map_err(bad)?;
        if let Manifest::Index(entries) = &parsed {
            let entry = manifest::select(entries, &self.platform).map_err(bad)?;
            let (body, content_type, _) =
                client.manifest(ep, repo, entry.digest.as_str(), manifest::ACCEPT)?;
            parsed = manifest::parse(content_type.as_deref(), &body).map_err(bad)?;
            if matches!(parsed, Manifest::Index(_)) {
                return Err(bad(manifest::ManifestError::Invalid(
                    "an index inside an index".into(),
                )));
            }
        }
        Ok((parsed, top_digest))
    }

    fn check_policy(
        &self,
        client: &Client,
        policy: &Policy,
        found: &Found<'_>,
    ) -> Result<(), PullError> {
        let signatures = if policy.needs_signatures(&found.name) {
            self.signatures(client, found)?
        } else {
            Vec::new()
        };
        policy
            .evaluate(&found.name, &found.top_digest, &signatures)
            .map_err(|e| PullError::Rejected(e.to_string()))
    }

    /// Cosign-style signatures stored beside the image.
    fn signatures(
        &self,
        client: &Client,
        found: &Found<'_>,
    ) -> Result<Vec<SigstoreSignature>, PullError> {
        let tag = signature_tag(&found.top_digest);
        let body = match client.manifest(&found.endpoint, &found.repo, &tag, manifest::OCI_MANIFEST)
        {
            Ok((body, _, _)) => body,
            Err(ClientError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(client_error(&found.name, e)),
        };
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| PullError::Rejected(format!("{}: signature manifest: {e}", found.name)))?;
        let mut out = Vec::new();
        for layer in doc["layers"].as_array().into_iter().flatten().take(16) {
            let (Some(digest), Some(size), Some(sig)) = (
                layer["digest"].as_str().and_then(|d| Digest::parse(d).ok()),
                layer["size"].as_u64(),
                layer["annotations"]["dev.cosignproject.cosign/signature"].as_str(),
            ) else {
                continue;
            };
            let payload = client
                .document(&found.endpoint, &found.repo, digest.as_str(), size)
                .map_err(|e| client_error(&found.name, e))?;
            out.push(SigstoreSignature {
                payload,
                signature_base64: sig.to_string(),
            });
        }
        Ok(out)
    }

    /// A lock per layer, so two pulls sharing a layer fetch it once.
    fn layer_lock(&self, chain_id: &Digest) -> Arc<Mutex<()>> {
        let mut map = self.in_flight.lock();
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(chain_id.clone()).or_default().clone()
    }

    /// Fetches the missing layers, `parallel_layers` at a time.
    fn fetch_layers(
        &self,
        client: &Client,
        found: &Found<'_>,
        descs: &[Descriptor],
        diff_ids: &[Digest],
        chains: &[Digest],
    ) -> Result<(), PullError> {
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<PullError>> = Mutex::new(None);
        let workers = self.parallel_layers.clamp(1, descs.len().max(1));
        let pull_span = tracing::Span::current();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= descs.len() || first_error.lock().is_some() {
                            return;
                        }
                        let _layer = tracing::debug_span!(
                            parent: &pull_span,
                            "layer",
                            otel.name = "layer",
                            digest = %descs[i].digest,
                            size = descs[i].size,
                        )
                        .entered();
                        let parent = i.checked_sub(1).map(|p| &chains[p]);
                        if let Err(e) = self.fetch_layer(
                            client,
                            found,
                            &descs[i],
                            parent,
                            &diff_ids[i],
                            &chains[i],
                        ) {
                            first_error.lock().get_or_insert(e);
                        }
                    }
                });
            }
        });
        match first_error.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fetch_layer(
        &self,
        client: &Client,
        found: &Found<'_>,
        desc: &Descriptor,
        parent: Option<&Digest>,
        diff_id: &Digest,
        chain: &Digest,
    ) -> Result<(), PullError> {
        let lock = self.layer_lock(chain);
        let _held = lock.lock();
        if self.layers.get(chain).is_some() {
            if let Some(tell) = found.on_layer {
                tell(LayerEvent::Reused {
                    digest: desc.digest.as_str(),
                    size: known_size(desc),
                });
            }
            return Ok(());
        }
        let info = self.unpack_blob(client, found, desc, parent, Some(diff_id))?;
        if info.chain_id != *chain {
            return Err(PullError::Failed(format!(
                "{}: layer {} stored as {}, expected {chain}",
                found.name, desc.digest, info.chain_id
            )));
        }
        Ok(())
    }

    /// Schema 1 layers: diff IDs are known only after unpacking, one by one.
    fn schema1_layers(
        &self,
        client: &Client,
        found: &Found<'_>,
        descs: &[Descriptor],
    ) -> Result<Vec<crio_storage::LayerInfo>, PullError> {
        let mut out: Vec<crio_storage::LayerInfo> = Vec::new();
        for desc in descs {
            let parent = out.last().map(|l| l.chain_id.clone());
            out.push(self.unpack_blob(client, found, desc, parent.as_ref(), None)?);
        }
        Ok(out)
    }

    /// Streams one blob through decompression into the layer store.
    fn unpack_blob(
        &self,
        client: &Client,
        found: &Found<'_>,
        desc: &Descriptor,
        parent: Option<&Digest>,
        diff_id: Option<&Digest>,
    ) -> Result<crio_storage::LayerInfo, PullError> {
        let what = format!("{}: layer {}", found.name, desc.digest);
        let blob = client
            .blob(
                &found.endpoint,
                &found.repo,
                desc.digest.as_str(),
                Some(desc.size).filter(|s| *s != UNKNOWN_SIZE),
            )
            .map_err(|e| client_error(&found.name, e))?;
        let mut blob = Counted {
            inner: blob,
            bytes: 0,
        };
        let mut buffered = BufReader::with_capacity(256 << 10, &mut blob);
        let result = {
            let decoder = decompressor(&mut buffered)
                .map_err(|e| PullError::Failed(format!("{what}: {e}")))?;
            self.layers.put(parent, diff_id, decoder, &self.limits)
        };
        let info = result.map_err(|e| layer_error(&what, e))?;
        // Read to the end so the blob's size and digest are checked.
        io::copy(&mut buffered, &mut io::sink())
            .map_err(|e| client_error(&found.name, read_error(e, &what)))?;
        drop(buffered);
        if let Some(tell) = found.on_layer {
            tell(LayerEvent::Fetched {
                media_type: &desc.media_type,
                size: known_size(desc),
                bytes: blob.bytes,
            });
        }
        Ok(info)
    }
}

/// A blob's size in its manifest, 0 when the manifest does not say.
fn known_size(desc: &Descriptor) -> u64 {
    if desc.size == UNKNOWN_SIZE {
        0
    } else {
        desc.size
    }
}

/// A decompressing reader chosen by the stream's magic bytes: gzip, zstd or
/// plain tar (media types are not always right).
fn decompressor<'a, R: BufRead + 'a>(reader: &'a mut R) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(reader))
    }
}

fn layer_error(what: &str, e: crio_storage::layers::LayerError) -> PullError {
    // A read error inside unpacking may be the blob's own verification.
    let text = e.to_string();
    if text.contains(crate::client::CANCELLED_TEXT) {
        PullError::Cancelled(format!("{what}: cancelled"))
    } else {
        PullError::Failed(format!("{what}: {text}"))
    }
}

fn client_error(name: &Reference, e: ClientError) -> PullError {
    let text = format!("pull {name}: {e}");
    match e {
        ClientError::Unauthorized { .. } => PullError::Unauthorized(text),
        ClientError::NotFound { .. } => PullError::NotFound(text),
        ClientError::Cancelled => PullError::Cancelled(text),
        ClientError::Transport { ref detail, .. } if detail.contains("timed out") => {
            PullError::Cancelled(text)
        }
        _ => PullError::Failed(text),
    }
}

/// A `rootfs.diff_ids` entry of an image config that is not a digest.
#[derive(Debug, thiserror::Error)]
enum BadDiffId {
    /// Not a JSON string.
    #[error("rootfs.diff_ids[{index}]: {value} is not a string")]
    NotString {
        index: usize,
        value: serde_json::Value,
    },
    /// A string that is not a digest.
    #[error("rootfs.diff_ids[{index}]: {source}")]
    Digest {
        index: usize,
        source: crio_storage::DigestError,
    },
}

/// The config's `rootfs.diff_ids`, each a digest: they become chain IDs,
/// which name the layer store's directories.
fn diff_ids(config: &serde_json::Value) -> Result<Vec<Digest>, BadDiffId> {
    let Some(list) = config["rootfs"]["diff_ids"].as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(index, d)| {
            let text = d.as_str().ok_or_else(|| BadDiffId::NotString {
                index,
                value: d.clone(),
            })?;
            Digest::parse(text).map_err(|source| BadDiffId::Digest { index, source })
        })
        .collect()
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthFile;
    use crate::peer::{Peer, Reply};

    #[test]
    fn diff_ids_that_are_not_digests_are_refused_naming_the_field() {
        let good = Digest::of(b"layer");
        let config = serde_json::json!({"rootfs": {"diff_ids": [good.as_str()]}});
        assert_eq!(diff_ids(&config).unwrap(), std::slice::from_ref(&good));
        for (bad, why) in [
            (
                serde_json::json!(format!("{good}/diff/fake")),
                "not a sha256 digest",
            ),
            (
                serde_json::json!("sha256:../../../../etc"),
                "not a sha256 digest",
            ),
            (serde_json::json!(7), "not a string"),
        ] {
            let config = serde_json::json!({"rootfs": {"diff_ids": [good.as_str(), bad]}});
            let err = diff_ids(&config).unwrap_err().to_string();
            assert!(
                err.starts_with("rootfs.diff_ids[1]: ") && err.contains(why),
                "{err}"
            );
        }
        assert!(diff_ids(&serde_json::json!({})).unwrap().is_empty());
    }

    /// Request credentials for `server_address` (empty: the image's registry).
    fn basic(user: &str, password: &str, server_address: &str) -> Option<RequestCredentials> {
        let credentials = Credentials::Basic {
            username: user.into(),
            password: password.into(),
        };
        Some(RequestCredentials::new(credentials, server_address).unwrap())
    }

    /// `Basic base64(user:password)`.
    fn header(user: &str, password: &str) -> String {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {token}")
    }

    /// A registry that wants basic credentials and then has nothing.
    fn basic_registry() -> Peer {
        Peer::start(|seen| match seen.authorization {
            None => Reply::status(401).header("WWW-Authenticate", r#"Basic realm="r""#),
            Some(_) => Reply::status(404),
        })
    }

    struct World {
        _dir: tempfile::TempDir,
        puller: Puller,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let layers = LayerStore::open(&dir.path().join("layers")).unwrap();
        let images = Arc::new(ImageStore::open(&dir.path().join("images")).unwrap());
        World {
            puller: Puller::new(layers, images),
            _dir: dir,
        }
    }

    /// Pulls `name` with the request's `credentials` and `auth_file`;
    /// the outcome is not the point (the peers have no image).
    fn pull(
        registries: &str,
        name: &str,
        credentials: Option<RequestCredentials>,
        auth_file: &AuthFile,
    ) -> PullError {
        let registries = RegistriesConf::parse(registries, "registries.conf").unwrap();
        let lookup = |r: &Reference| auth_file.lookup(&r.registry, &r.repository);
        let opts = PullOptions {
            registries: &registries,
            policy: None,
            credentials,
            lookup_credentials: &lookup,
            progress_timeout: Some(Duration::from_secs(10)),
            cancel: Arc::default(),
            pinned: false,
            on_layer: None,
        };
        world().puller.pull(name, &opts).unwrap_err()
    }

    #[test]
    fn short_name_candidates_do_not_get_the_request_credentials() {
        let (b, a) = (basic_registry(), basic_registry());
        let conf = format!(
            "short-name-mode = \"permissive\"\n\
             unqualified-search-registries = [\"{b}\", \"{a}\"]\n\
             [[registry]]\nlocation = \"{b}\"\ninsecure = true\n\
             [[registry]]\nlocation = \"{a}\"\ninsecure = true\n",
            a = a.host(),
            b = b.host()
        );
        // The kubelet looked these up for docker.io/library/app, the name
        // as Docker reads it: neither search registry gets them.
        let err = pull(
            &conf,
            "app:1",
            basic("alice", "s3cret", ""),
            &AuthFile::default(),
        );
        assert!(matches!(err, PullError::Unauthorized(_)), "{err}");
        assert_eq!(b.authorizations(), Vec::<String>::new());
        assert_eq!(a.authorizations(), Vec::<String>::new());
        // Each candidate was asked: one wanting credentials does not end
        // the search.
        for peer in [&b, &a] {
            assert!(
                peer.seen().iter().any(|s| s.path == "/v2/app/manifests/1"),
                "{:?}",
                peer.seen()
            );
        }

        // With server_address naming A, A alone gets them.
        let err = pull(
            &conf,
            "app:1",
            basic("alice", "s3cret", &format!("http://{}", a.host())),
            &AuthFile::default(),
        );
        assert!(matches!(err, PullError::Unauthorized(_)), "{err}");
        assert_eq!(b.authorizations(), Vec::<String>::new());
        assert_eq!(a.authorizations(), [header("alice", "s3cret")]);
    }

    #[test]
    fn mirrors_get_their_own_credentials_only() {
        let (mirror, primary) = (basic_registry(), basic_registry());
        let conf = format!(
            "[[registry]]\nlocation = \"{p}/test\"\ninsecure = true\n\
             [[registry.mirror]]\nlocation = \"{m}/cache\"\ninsecure = true\n",
            p = primary.host(),
            m = mirror.host()
        );
        let auth = AuthFile::parse(
            &format!(
                r#"{{"auths": {{"{m}/cache": {{"auth": "Ym9iOm1pcnJvcg=="}},
                                "{p}": {{"auth": "Y2Fyb2w6ZmlsZQ=="}}}}}}"#,
                m = mirror.host(),
                p = primary.host()
            ),
            "auth.json",
        )
        .unwrap();
        let name = format!("{}/test/app:1", primary.host());
        // The request's credentials go to the primary; the mirror gets the
        // auth file's entry for its own host and path (bob:mirror).
        let err = pull(&conf, &name, basic("alice", "s3cret", ""), &auth);
        assert!(matches!(err, PullError::NotFound(_)), "{err}");
        assert_eq!(mirror.authorizations(), [header("bob", "mirror")]);
        assert_eq!(primary.authorizations(), [header("alice", "s3cret")]);
        // Without request credentials each gets its own auth file entry.
        let (mirror_before, primary_before) = (
            mirror.authorizations().len(),
            primary.authorizations().len(),
        );
        pull(&conf, &name, None, &auth);
        assert_eq!(
            mirror.authorizations()[mirror_before..],
            [header("bob", "mirror")]
        );
        assert_eq!(
            primary.authorizations()[primary_before..],
            [header("carol", "file")]
        );
    }
}
