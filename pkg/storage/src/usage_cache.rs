//! Usage figures of the image store and of the containers' writable layers,
//! kept for the kubelet, which asks for them every few seconds (ImageFsInfo,
//! ContainerStats). Answers come from memory; the figures are measured on a
//! thread of their own: layers once (their records carry their usage), the
//! containers' directories by a bounded walk at most once per interval, and
//! only while someone asks (or always, on a configured period).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::layers::LayerStore;
use crate::usage::{Usage, WalkLimits, Walked, walk_with_part};

/// A figure and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// The figure.
    pub usage: Usage,
    /// When the measurement ended.
    pub at: SystemTime,
}

/// When the containers' directories are walked.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Least time between the starts of two walks (and at least twice as
    /// long as the last walk took, so walking never takes over a core).
    pub interval: Duration,
    /// Walk every interval even when nobody asks (CRI-O's
    /// `stats_collection_period`); otherwise only after a question.
    pub background: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            background: false,
        }
    }
}

/// The figures ImageFsInfo reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsFigures {
    /// Image layers: the sum of the layers' records.
    pub layers: Measured,
    /// Containers' directories (writable layers, work dirs, volumes).
    pub containers: Measured,
}

/// Measures one container's directory: the whole, and its upper dir.
type Walker = dyn Fn(&Path) -> Walked + Send + Sync;

/// The name of a container's writable layer within its directory.
const UPPER: &str = "upper";

/// The figures, and the thread that measures them.
pub struct UsageCache {
    shared: Arc<Shared>,
}

struct Shared {
    layers: LayerStore,
    containers_dir: PathBuf,
    schedule: Schedule,
    walker: Box<Walker>,
    state: Mutex<State>,
    wake: Condvar,
}

/// Guarded by one lock, held only to read or publish, never across I/O.
struct State {
    layers: Measured,
    /// When the listing behind `layers` began: an older one never replaces it.
    layers_listed: SystemTime,
    containers: Measured,
    /// Container ID → (whole directory, writable layer).
    per_container: HashMap<String, (Measured, Measured)>,
    asked: bool,
    layers_changed: bool,
    stop: bool,
}

impl UsageCache {
    /// Starts measuring the layers of `layers` and the containers'
    /// directories in `containers_dir` (one per container ID, the writable
    /// layer in its `upper`).
    pub fn start(
        layers: LayerStore,
        containers_dir: &Path,
        schedule: Schedule,
    ) -> std::io::Result<Self> {
        let limits = WalkLimits::default();
        let walker = move |dir: &Path| walk_with_part(dir, Some(OsStr::new(UPPER)), &limits);
        Self::start_with(layers, containers_dir, schedule, Box::new(walker))
    }

    fn start_with(
        layers: LayerStore,
        containers_dir: &Path,
        schedule: Schedule,
        walker: Box<Walker>,
    ) -> std::io::Result<Self> {
        let now = SystemTime::now();
        let nothing = Measured {
            usage: Usage::default(),
            at: now,
        };
        let shared = Arc::new(Shared {
            layers,
            containers_dir: containers_dir.to_path_buf(),
            schedule,
            walker,
            state: Mutex::new(State {
                layers: nothing,
                layers_listed: SystemTime::UNIX_EPOCH,
                containers: nothing,
                per_container: HashMap::new(),
                asked: true,
                layers_changed: true,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let measuring = shared.clone();
        std::thread::Builder::new()
            .name("disk-usage".into())
            .spawn(move || measuring.run())?;
        Ok(Self { shared })
    }

    /// The image store's and the containers' figures, as last measured.
    pub fn fs_figures(&self) -> FsFigures {
        let state = self.shared.asked();
        FsFigures {
            layers: state.layers,
            containers: state.containers,
        }
    }

    /// The writable layer of container `id` as last measured; None before
    /// its first measurement.
    pub fn writable_layer(&self, id: &str) -> Option<Measured> {
        self.shared.asked().per_container.get(id).map(|(_, w)| *w)
    }

    /// Sums the layers' records again, on the calling thread (blocking
    /// I/O), so that the figures follow a pull as soon as it is done.
    /// Records still to be measured are left to the measuring thread.
    pub fn refresh_layers(&self) {
        if !self.shared.refresh_layers(false) {
            self.layers_changed();
        }
    }

    /// Has the layers summed again soon, on the measuring thread.
    pub fn layers_changed(&self) {
        self.shared.lock().layers_changed = true;
        self.shared.wake.notify_one();
    }

    /// Measures container `id`'s directory now, on the calling thread
    /// (blocking I/O): a new container has figures from the start.
    pub fn measure_container(&self, id: &str) {
        self.shared.measure_container(id);
    }
}

impl Drop for UsageCache {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The state, after noting that someone wants figures.
    fn asked(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        if !state.asked {
            state.asked = true;
            self.wake.notify_one();
        }
        state
    }

    fn run(&self) {
        let mut last: Option<(Instant, Duration)> = None;
        loop {
            let (layers, containers) = {
                let mut state = self.lock();
                loop {
                    if state.stop {
                        return;
                    }
                    let wait = last.map_or(Duration::ZERO, |(started, took)| {
                        self.schedule
                            .interval
                            .max(took * 2)
                            .saturating_sub(started.elapsed())
                    });
                    let containers = wait.is_zero() && (state.asked || self.schedule.background);
                    if containers || state.layers_changed {
                        if containers {
                            state.asked = false;
                        }
                        let layers = std::mem::take(&mut state.layers_changed) || containers;
                        break (layers, containers);
                    }
                    let nap = if wait.is_zero() {
                        Duration::from_secs(3600)
                    } else {
                        wait
                    };
                    self.wake.wait_for(&mut state, nap);
                }
            };
            let started = Instant::now();
            if layers {
                self.refresh_layers(true);
            }
            if containers {
                self.refresh_containers();
                last = Some((started, started.elapsed()));
            }
        }
    }

    /// Sums the layers' records; false if some had no figure and
    /// `measure_old` was not given to measure them.
    fn refresh_layers(&self, measure_old: bool) -> bool {
        let listed = SystemTime::now();
        let mut total = Usage::default();
        let mut complete = true;
        for info in self.layers.list() {
            let usage = match info.usage {
                Some(usage) => usage,
                None if !measure_old => {
                    complete = false;
                    continue;
                }
                // Recorded by an older version without the figure.
                None => match self.layers.measure(&info) {
                    Ok(measured) => measured.usage.unwrap_or_default(),
                    Err(e) => {
                        tracing::debug!("measure layer {}: {e}", info.chain_id);
                        continue;
                    }
                },
            };
            total += usage;
        }
        let mut state = self.lock();
        if listed >= state.layers_listed {
            state.layers_listed = listed;
            state.layers = Measured {
                usage: total,
                at: SystemTime::now(),
            };
        }
        complete
    }

    fn measure_container(&self, id: &str) -> (Measured, Measured) {
        let walked = (self.walker)(&self.containers_dir.join(id));
        if walked.truncated {
            tracing::debug!(container = id, "usage walk stopped at the depth bound");
        }
        let at = SystemTime::now();
        let figures = (
            Measured {
                usage: walked.usage,
                at,
            },
            Measured {
                usage: walked.part,
                at,
            },
        );
        self.lock().per_container.insert(id.to_string(), figures);
        figures
    }

    fn refresh_containers(&self) {
        let started = SystemTime::now();
        let ids: HashSet<String> = std::fs::read_dir(&self.containers_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            self.measure_container(id);
        }
        let mut state = self.lock();
        // Gone since the listing; but keep those measured as they came.
        state
            .per_container
            .retain(|id, (whole, _)| ids.contains(id) || whole.at >= started);
        let mut total = Usage::default();
        for (whole, _) in state.per_container.values() {
            total += whole.usage;
        }
        state.containers = Measured {
            usage: total,
            at: SystemTime::now(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::Limits;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// Polls `probe` for up to 20 s.
    fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = probe() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `f` on another thread; its result, or a failure if it does not
    /// come within 5 s (a call that waits for a walk never would).
    fn answers<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("answered without waiting for the walk")
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        layers: LayerStore,
        containers: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let layers = LayerStore::open(&tmp.path().join("layers")).unwrap();
        let containers = tmp.path().join("containers");
        std::fs::create_dir_all(containers.join("c1/upper")).unwrap();
        std::fs::create_dir_all(containers.join("c1/work")).unwrap();
        std::fs::write(containers.join("c1/upper/f"), b"data").unwrap();
        Fixture {
            _tmp: tmp,
            layers,
            containers,
        }
    }

    fn default_walker(dir: &Path) -> Walked {
        walk_with_part(dir, Some(OsStr::new(UPPER)), &WalkLimits::default())
    }

    /// While a walk is under way (held here), the figures answer at once,
    /// with what was measured before; once it ends they catch up.
    #[test]
    fn answers_while_a_walk_is_in_progress() {
        let f = fixture();
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let walker = move |dir: &Path| {
            let _ = started_tx.send(());
            let _ = release_rx.lock().recv();
            default_walker(dir)
        };
        let cache = Arc::new(
            UsageCache::start_with(
                f.layers.clone(),
                &f.containers,
                Schedule::default(),
                Box::new(walker),
            )
            .unwrap(),
        );
        started_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the first walk starts by itself");
        let c = cache.clone();
        let (fs, layer) = answers(move || (c.fs_figures(), c.writable_layer("c1")));
        assert_eq!(fs.containers.usage, Usage::default());
        assert_eq!(layer, None);

        drop(release_tx);
        let layer = eventually("the walk's figures", || cache.writable_layer("c1"));
        // upper and f; the whole directory adds c1 and work.
        assert_eq!(layer.usage.inodes, 2);
        let fs = eventually("the containers' total", || {
            Some(cache.fs_figures()).filter(|f| f.containers.usage.inodes > 0)
        });
        assert_eq!(fs.containers.usage.inodes, 4);
        assert!(fs.containers.at >= layer.at);
    }

    /// Questions within the interval are answered from the last walk; after
    /// it, a question brings a new one. Nobody asking, nothing is walked.
    #[test]
    fn walks_at_most_once_per_interval_and_only_when_asked() {
        let f = fixture();
        let walks = Arc::new(AtomicUsize::new(0));
        let counter = walks.clone();
        let walker = move |dir: &Path| {
            counter.fetch_add(1, Ordering::SeqCst);
            default_walker(dir)
        };
        let hour = Schedule {
            interval: Duration::from_secs(3600),
            background: false,
        };
        let cache = UsageCache::start_with(f.layers.clone(), &f.containers, hour, Box::new(walker))
            .unwrap();
        let first = eventually("the first walk", || cache.writable_layer("c1"));
        for _ in 0..100 {
            assert_eq!(cache.writable_layer("c1"), Some(first));
            cache.fs_figures();
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(walks.load(Ordering::SeqCst), 1);
        drop(cache);

        let walks = Arc::new(AtomicUsize::new(0));
        let counter = walks.clone();
        let walker = move |dir: &Path| {
            counter.fetch_add(1, Ordering::SeqCst);
            default_walker(dir)
        };
        let often = Schedule {
            interval: Duration::ZERO,
            background: false,
        };
        let cache =
            UsageCache::start_with(f.layers.clone(), &f.containers, often, Box::new(walker))
                .unwrap();
        // Waiting without asking.
        eventually("the first walk", || {
            (walks.load(Ordering::SeqCst) == 1).then_some(())
        });
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(walks.load(Ordering::SeqCst), 1, "nobody asked");
        cache.fs_figures();
        eventually("a walk after the question", || {
            (walks.load(Ordering::SeqCst) == 2).then_some(())
        });
    }

    /// Layer figures come from the records (written at unpack, or measured
    /// once for records without one); a removed container is forgotten.
    #[test]
    fn layers_from_records_and_containers_forgotten() {
        let f = fixture();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "x", &b"abc"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let info = f
            .layers
            .put(None, None, &tar[..], &Limits::default())
            .unwrap();
        let cache = UsageCache::start(
            f.layers.clone(),
            &f.containers,
            Schedule {
                interval: Duration::from_millis(50),
                background: true,
            },
        )
        .unwrap();
        cache.refresh_layers();
        assert_eq!(cache.fs_figures().layers.usage, info.usage.unwrap());

        // A record without the figure gets it on the measuring thread.
        let record = f
            .layers
            .diff_dir(&info.chain_id)
            .with_file_name("layer.json");
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("usage");
        std::fs::write(&record, old.to_string()).unwrap();
        cache.layers_changed();
        eventually("the old record measured", || {
            f.layers.get(&info.chain_id).filter(|i| i.usage.is_some())
        });
        assert_eq!(cache.fs_figures().layers.usage, info.usage.unwrap());

        eventually("c1 measured", || cache.writable_layer("c1"));
        std::fs::remove_dir_all(f.containers.join("c1")).unwrap();
        eventually("c1 forgotten", || {
            cache.writable_layer("c1").is_none().then_some(())
        });
        eventually("an empty total", || {
            (cache.fs_figures().containers.usage == Usage::default()).then_some(())
        });
    }
}
