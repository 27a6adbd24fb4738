//! The daemon's image subsystem: the stores, registries.conf and the trust
//! policy (reloaded on SIGHUP), pulls (one at a time per image name and
//! credentials, on blocking threads), lookups, removal and garbage
//! collection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use crio_config::Config;
use crio_image::auth::{AuthFile, Credentials, RequestCredentials};
use crio_image::policy::Policy;
use crio_image::pull::{PullOptions, Puller};
use crio_image::reference::Reference;
use crio_image::registries::RegistriesConf;
use crio_storage::images::Edit;
use crio_storage::usage_cache::{FsFigures, Schedule, UsageCache};
use crio_storage::{ImageRecord, ImageStore, LayerStore};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use crate::error::Error;

/// Where trust decisions come from; replaced as a whole on reload.
struct Trust {
    registries: RegistriesConf,
    policy: Option<Policy>,
    auth: Option<AuthFile>,
}

/// The outcome of a pull, shared with callers that asked for the same name.
type PullOutcome = Result<ImageRecord, Error>;

/// A layer of an image is not in the layer store.
#[derive(Debug, thiserror::Error)]
#[error("layer {0} is missing")]
pub struct MissingLayer(crio_storage::digest::Digest);

/// What makes two pulls one download: the name and the credentials, by
/// fingerprint (the secrets themselves are kept out of the key). A caller
/// whose credentials the registry would refuse must not get the image
/// another caller's credentials fetched.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PullKey {
    name: String,
    credentials: Option<[u8; 32]>,
}

impl PullKey {
    fn new(name: &str, credentials: Option<&RequestCredentials>) -> Self {
        Self {
            name: name.to_string(),
            credentials: credentials.map(RequestCredentials::fingerprint),
        }
    }
}

/// Images: stores, pulls and trust configuration.
pub struct Images {
    store: Arc<ImageStore>,
    layers: LayerStore,
    puller: Arc<Puller>,
    trust: RwLock<Arc<Trust>>,
    in_flight: Arc<Mutex<HashMap<PullKey, InFlight>>>,
    progress_timeout: Option<Duration>,
    layers_dir: PathBuf,
    containers_dir: PathBuf,
    usage: Arc<UsageCache>,
    config: crio_config::ImageConfig,
}

impl Images {
    /// Opens the stores under `root` (removing debris of interrupted pulls)
    /// and loads registries.conf, the policy and the auth file.
    pub fn open(config: &Config) -> Result<Self> {
        let layers_dir = config.root.join("layers");
        let layers = LayerStore::open(&layers_dir)?;
        let store = Arc::new(ImageStore::open(&config.root.join("images"))?);
        let containers_dir = config.root.join("containers");
        crio_storage::dirs::ensure(&containers_dir, crio_storage::dirs::PRIVATE)
            .with_context(|| format!("create {}", containers_dir.display()))?;
        let timeout = crio_config::parse_duration(&config.image.pull_progress_timeout)
            .ok()
            .filter(|d| !d.is_zero());
        let usage = UsageCache::start(layers.clone(), &containers_dir, usage_schedule(config))
            .context("start the disk usage thread")?;
        let images = Self {
            puller: Arc::new(Puller::new(layers.clone(), store.clone())),
            store,
            layers,
            trust: RwLock::new(Arc::new(load_trust(&config.image)?)),
            in_flight: Arc::default(),
            progress_timeout: timeout,
            layers_dir,
            containers_dir,
            usage: Arc::new(usage),
            config: config.image.clone(),
        };
        let removed = images.gc();
        if removed > 0 {
            tracing::info!(removed, "removed layers no image uses");
        }
        Ok(images)
    }

    /// Re-reads registries.conf, the policy and the auth file.
    pub fn reload(&self) -> Result<()> {
        let trust = load_trust(&self.config)?;
        *self.trust.write() = Arc::new(trust);
        Ok(())
    }

    fn trust(&self) -> Arc<Trust> {
        self.trust.read().clone()
    }

    /// The image records.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The image `name` refers to: an ID, ID prefix, repo tag or digest,
    /// with short names resolved as a pull would.
    pub fn find(&self, name: &str) -> Option<ImageRecord> {
        if let Some(found) = self.store.find(name) {
            return Some(found);
        }
        let trust = self.trust();
        let candidates = trust.registries.resolve(name).ok()?;
        candidates.iter().find_map(|r| {
            let mut r = r.clone();
            if r.tag.is_none() && r.digest.is_none() {
                r.tag = Some("latest".into());
            }
            self.store.find(&r.to_string())
        })
    }

    /// Pulls `name`. Concurrent pulls of the same name with the same
    /// credentials share one download, which runs in its own task; once
    /// every caller has gone (cancelled RPCs), the download is stopped.
    pub async fn pull(
        &self,
        name: &str,
        credentials: Option<RequestCredentials>,
        pinned: bool,
    ) -> Result<ImageRecord, Error> {
        let key = PullKey::new(name, credentials.as_ref());
        let (mut rx, interest) = {
            let mut map = self.in_flight.lock();
            let entry = map.entry(key.clone()).or_insert_with(|| {
                let pull = InFlight {
                    tx: broadcast::channel(1).0,
                    interest: Arc::new(Interest::default()),
                };
                self.spawn_pull(
                    key.clone(),
                    name.to_string(),
                    credentials,
                    pinned,
                    pull.interest.clone(),
                );
                pull
            });
            entry.interest.callers.fetch_add(1, Ordering::SeqCst);
            (entry.tx.subscribe(), Interested(entry.interest.clone()))
        };
        let outcome = rx.recv().await;
        drop(interest);
        match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Aborted(format!("pull of {name:?} stopped"))),
        }
    }

    fn spawn_pull(
        &self,
        key: PullKey,
        name: String,
        credentials: Option<RequestCredentials>,
        pinned: bool,
        interest: Arc<Interest>,
    ) {
        let puller = self.puller.clone();
        let trust = self.trust();
        let timeout = self.progress_timeout;
        let in_flight = self.in_flight.clone();
        let usage = self.usage.clone();
        // Under the span of the caller that began it; its layers are children.
        let span = tracing::debug_span!("step", otel.name = "image pull", image = %name);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let cancel = interest.cancel.clone();
            let task_name = name.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let _pulling = span.enter();
                let lookup = |r: &Reference| {
                    trust
                        .auth
                        .as_ref()
                        .map(|a| a.lookup(&r.registry, &r.repository))
                        .unwrap_or(Credentials::Anonymous)
                };
                let metrics = crate::metrics::global();
                let on_layer =
                    |event: crio_image::pull::LayerEvent<'_>| metrics.observe_layer(event);
                let opts = PullOptions {
                    registries: &trust.registries,
                    policy: trust.policy.as_ref(),
                    credentials,
                    lookup_credentials: &lookup,
                    progress_timeout: timeout,
                    cancel,
                    pinned,
                    on_layer: Some(&on_layer),
                };
                let pulled = puller.pull(&task_name, &opts);
                metrics.observe_pull(pulled.as_ref().map(drop));
                let pulled = pulled.map_err(|e| Error::Pull(Arc::new(e)));
                // ImageFsInfo counts the new layers once the pull is done.
                usage.refresh_layers();
                pulled
            })
            .await
            .unwrap_or_else(|e| Err(Error::Internal(format!("pull task failed: {e}"))));
            match &outcome {
                Ok(image) => tracing::info!(
                    image = %image.id,
                    name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pulled"
                ),
                Err(e) => tracing::warn!("{e}"),
            }
            let entry = in_flight.lock().remove(&key);
            if let Some(entry) = entry {
                let _ = entry.tx.send(outcome);
            }
        });
    }

    /// Removes `name`: a tag of an image with other tags only loses that
    /// tag; otherwise the image goes, and the layers no image uses.
    /// `in_use` names the containers using each image ID: such an image
    /// may lose a tag, but is not deleted.
    pub fn remove(&self, name: &str, in_use: &dyn Fn(&str) -> Vec<String>) -> Result<(), Error> {
        let Some(found) = self.find(name) else {
            return Ok(());
        };
        let users = in_use(found.id.as_str());
        // Decided and done under the store's lock: two untags of one image
        // at once each remove their tag, and the last one the image.
        let outcome = self.store.modify(&found.id, |image| {
            if image.pinned {
                let e = Error::Precondition(format!(
                    "image {name:?} ({}) is pinned and cannot be removed",
                    image.id
                ));
                return (Edit::Keep, Err(e));
            }
            let by_tag = image.repo_tags.iter().position(|t| self.names_tag(name, t));
            if let (Some(i), true) = (by_tag, image.repo_tags.len() > 1) {
                image.repo_tags.remove(i);
                return (Edit::Write, Ok(false));
            }
            if !users.is_empty() {
                let e = Error::Precondition(format!(
                    "image {name:?} ({}) is in use by container {}",
                    image.id,
                    users.join(", ")
                ));
                return (Edit::Keep, Err(e));
            }
            (Edit::Remove, Ok(true))
        });
        let removed = outcome.map_err(Error::internal)?.transpose()?;
        if removed == Some(true) {
            self.gc();
        }
        Ok(())
    }

    fn names_tag(&self, name: &str, tag: &str) -> bool {
        name == tag
            || self
                .trust()
                .registries
                .resolve(name)
                .map(|c| {
                    c.iter().any(|r| {
                        let mut r = r.clone();
                        if r.tag.is_none() && r.digest.is_none() {
                            r.tag = Some("latest".into());
                        }
                        r.to_string() == tag
                    })
                })
                .unwrap_or(false)
    }

    /// The image's layer directories, topmost first, by their short links
    /// (overlay's lowerdir order).
    pub fn layer_paths(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, MissingLayer> {
        image
            .layers
            .iter()
            .rev()
            .map(|chain| {
                self.layers
                    .get(chain)
                    .map(|info| self.layers.short_path(&info))
                    .ok_or_else(|| MissingLayer(chain.clone()))
            })
            .collect()
    }

    /// Deletes layers that no image uses; returns how many.
    pub fn gc(&self) -> usize {
        let used = self.store.layers_in_use();
        let mut removed = 0;
        for layer in self.layers.list() {
            if !used.contains(&layer.chain_id) && self.layers.remove(&layer.chain_id).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            // On the calling thread, as after a pull: ImageFsInfo follows
            // the removal as soon as it is done.
            self.usage.refresh_layers();
        }
        removed
    }

    /// Usage of the image store and of the containers' directories, as
    /// last measured, with the directories they are for.
    pub fn fs_usage(&self) -> ((&Path, &Path), FsFigures) {
        (
            (&self.layers_dir, &self.containers_dir),
            self.usage.fs_figures(),
        )
    }

    /// The usage figures, measured off the async executor.
    pub fn usage(&self) -> &Arc<UsageCache> {
        &self.usage
    }
}

/// How often the containers' directories are walked: on CRI-O's stats
/// collection period when one is set, else on demand at most every 10 s.
fn usage_schedule(config: &Config) -> Schedule {
    let period = [
        config.stats.collection_period,
        config.stats.stats_collection_period,
    ]
    .into_iter()
    .find(|p| *p > 0);
    match period {
        Some(seconds) => Schedule {
            interval: Duration::from_secs(seconds),
            background: true,
        },
        None => Schedule::default(),
    }
}

/// A pull under way, shared by the callers that asked for it.
struct InFlight {
    tx: broadcast::Sender<PullOutcome>,
    interest: Arc<Interest>,
}

/// How many callers still wait for a pull, and its cancel flag.
#[derive(Default)]
struct Interest {
    callers: AtomicUsize,
    cancel: Arc<AtomicBool>,
}

/// One caller's interest; the last one to go cancels the pull.
struct Interested(Arc<Interest>);

impl Drop for Interested {
    fn drop(&mut self) {
        if self.0.callers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.cancel.store(true, Ordering::SeqCst);
        }
    }
}

/// The policy file used when `signature_policy` is empty.
const DEFAULT_POLICY: &str = "/etc/containers/policy.json";

fn load_trust(config: &crio_config::ImageConfig) -> Result<Trust> {
    let conf = &config.registries_conf;
    // Drop-ins live beside the file, as /etc/containers/registries.conf.d.
    let dropins = conf.parent().map(|d| d.join("registries.conf.d"));
    let mut registries = RegistriesConf::load(conf, dropins.as_deref())
        .with_context(|| format!("load {}", conf.display()))?;
    registries.set_insecure_registries(&config.insecure_registries);
    let policy = if config.signature_policy.as_os_str().is_empty() {
        let default = Path::new(DEFAULT_POLICY);
        if default.exists() {
            Some(Policy::load(default).with_context(|| format!("load {DEFAULT_POLICY}"))?)
        } else {
            tracing::warn!(
                "no {DEFAULT_POLICY} and no signature_policy: images are accepted without checks"
            );
            None
        }
    } else {
        let p = &config.signature_policy;
        Some(Policy::load(p).with_context(|| format!("load {}", p.display()))?)
    };
    let auth = if config.global_auth_file.as_os_str().is_empty() {
        None
    } else {
        let f = &config.global_auth_file;
        Some(AuthFile::load(f).with_context(|| format!("load {}", f.display()))?)
    };
    Ok(Trust {
        registries,
        policy,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str, password: &str, server: &str) -> RequestCredentials {
        let credentials = Credentials::Basic {
            username: user.into(),
            password: password.into(),
        };
        RequestCredentials::new(credentials, server).unwrap()
    }

    #[test]
    fn pull_keys_part_callers_by_credentials() {
        let key = |c: Option<RequestCredentials>| PullKey::new("quay.io/a:1", c.as_ref());
        let alice = key(Some(request("alice", "one", "")));
        assert!(alice == key(Some(request("alice", "one", ""))));
        for other in [
            key(None),
            key(Some(request("alice", "two", ""))),
            key(Some(request("bob", "one", ""))),
            key(Some(request("alice", "one", "quay.io"))),
            PullKey::new("quay.io/b:1", Some(&request("alice", "one", ""))),
        ] {
            assert!(alice != other);
        }
    }
}
