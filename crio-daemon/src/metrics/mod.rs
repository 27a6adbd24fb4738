//! The daemon's Prometheus metrics, with CRI-O's names, help and labels
//! (`container_runtime_crio_*`), counted where things happen (each RPC, image
//! pulls, OOM kills, creations a retry found still under way) and served
//! over HTTP when `[crio.metrics] enable_metrics` is set. `metrics_collectors`
//! chooses which families are exposed; counting never depends on it.
//!
//! Also here: ListMetricDescriptors and ListPodSandboxMetrics values
//! (`pod`), the daemon's process metrics (`process`), the endpoint
//! (`server`); each RPC is counted by `crate::telemetry`'s per-RPC layer.

pub mod pod;
mod process;
mod server;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

pub use server::serve;

/// CRI-O's subsystem: every family's name starts with it.
const SUBSYSTEM: &str = "container_runtime";

/// CRI-O's size buckets of pulled layers, in bytes (1 KB … 10 GB).
const SIZE_BUCKETS: [f64; 11] = [1e3, 1e6, 1e7, 5e7, 1e8, 2e8, 3e8, 4e8, 5e8, 1e9, 1e10];

/// The daemon's metrics. Counting is a few atomics, always on; the registry
/// holds only the collectors `metrics_collectors` names.
pub struct Metrics {
    registry: Registry,
    operations: IntCounterVec,
    operations_errors: IntCounterVec,
    operations_latency: GaugeVec,
    operations_latency_total: HistogramVec,
    pulls_layer_size: Histogram,
    pulls_bytes: IntCounterVec,
    pulls_skipped_bytes: IntCounterVec,
    pulls_failures: IntCounterVec,
    pulls_successes: IntCounter,
    layer_reuse: IntCounterVec,
    ooms: IntCounter,
    ooms_by_name: IntCounterVec,
    stalled: IntCounterVec,
    stopped_monitors: IntCounterVec,
    events_dropped: IntCounter,
    default_runtime: GaugeVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The metrics of this process (counted even when not served; all
/// collectors exposed unless [`init`] said otherwise first).
pub fn global() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(&[]))
}

/// Makes the process's metrics, exposing the collectors named (empty: all),
/// before anything counts; returns the names that are no collector, for a
/// warning.
pub fn init(collectors: &[String]) -> Vec<String> {
    let _ = METRICS.set(Metrics::new(collectors));
    unknown_collectors(collectors)
}

/// The names of `collectors` that are none of CRI-O's.
fn unknown_collectors(collectors: &[String]) -> Vec<String> {
    collectors
        .iter()
        .filter(|c| !COLLECTORS.contains(&stripped(c)))
        .cloned()
        .collect()
}

/// CRI-O's collector names (`metrics_collectors`), without prefixes.
pub const COLLECTORS: &[&str] = &[
    "image_pulls_layer_size",
    "containers_events_dropped_total",
    "containers_oom_total",
    "processes_defunct",
    "operations_total",
    "operations_latency_seconds",
    "operations_latency_seconds_total",
    "operations_errors_total",
    "image_pulls_bytes_total",
    "image_pulls_skipped_bytes_total",
    "image_pulls_failure_total",
    "image_pulls_success_total",
    "image_layer_reuse_total",
    "containers_oom_count_total",
    "containers_seccomp_notifier_count_total",
    "resources_stalled_at_stage",
    "containers_stopped_monitor_count",
    "default_runtime",
];

/// A collector name without CRI-O's prefixes (`container_runtime_`,
/// `crio_`), as CRI-O compares them.
fn stripped(name: &str) -> &str {
    let name = name.strip_prefix("container_runtime_").unwrap_or(name);
    name.strip_prefix("crio_").unwrap_or(name)
}

/// `container_runtime_crio_<name>` with its help.
fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("crio_{name}"), help).subsystem(SUBSYSTEM)
}

// The names are constants, checked by the unit tests: `expect` cannot fire.

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::with_opts(opts(name, help)).expect("a valid metric name")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(opts(name, help), labels).expect("a valid metric name")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(opts(name, help), labels).expect("a valid metric name")
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::from(opts(name, help)).buckets(buckets.to_vec())
}

impl Metrics {
    /// Metrics exposing the collectors named (empty: all).
    pub fn new(collectors: &[String]) -> Self {
        let m = Self {
            registry: Registry::new(),
            operations: counter_vec(
                "operations_total",
                "Cumulative number of CRI-O operations by operation type.",
                &["operation"],
            ),
            operations_errors: counter_vec(
                "operations_errors_total",
                "Cumulative number of CRI-O operation errors by operation type.",
                &["operation"],
            ),
            operations_latency: gauge_vec(
                "operations_latency_seconds",
                "Latency in seconds of individual CRI calls for CRI-O operations. Broken down by operation type.",
                &["operation"],
            ),
            operations_latency_total: HistogramVec::new(
                histogram(
                    "operations_latency_seconds_total",
                    "Latency in seconds of CRI-O operations. Broken down by operation type.",
                    prometheus::DEFAULT_BUCKETS,
                ),
                &["operation"],
            )
            .expect("a valid metric name"),
            pulls_layer_size: Histogram::with_opts(histogram(
                "image_pulls_layer_size",
                "Bytes transferred by CRI-O image pulls per layer",
                &SIZE_BUCKETS,
            ))
            .expect("a valid metric name"),
            pulls_bytes: counter_vec(
                "image_pulls_bytes_total",
                "Bytes transferred by CRI-O image pulls",
                &["mediatype", "size"],
            ),
            pulls_skipped_bytes: counter_vec(
                "image_pulls_skipped_bytes_total",
                "Bytes skipped by CRI-O image pulls",
                &["size"],
            ),
            pulls_failures: counter_vec(
                "image_pulls_failure_total",
                "Cumulative number of CRI-O image pull failures by error.",
                &["error"],
            ),
            pulls_successes: counter(
                "image_pulls_success_total",
                "Cumulative number of CRI-O image pull successes.",
            ),
            layer_reuse: counter_vec(
                "image_layer_reuse_total",
                "Reused (not pulled) local image layer count by name",
                &["name"],
            ),
            ooms: counter(
                "containers_oom_total",
                "Amount of containers killed because they ran out of memory (OOM)",
            ),
            ooms_by_name: counter_vec(
                "containers_oom_count_total",
                "Amount of containers killed because they ran out of memory (OOM) by their name",
                &["name"],
            ),
            stalled: counter_vec(
                "resources_stalled_at_stage",
                "Resource creation stage pod or container is stalled at.",
                &["stage"],
            ),
            stopped_monitors: counter_vec(
                "containers_stopped_monitor_count",
                "Amount of containers whose monitor process has exited by their name",
                &["name"],
            ),
            events_dropped: counter(
                "containers_events_dropped_total",
                "Amount of container events dropped",
            ),
            default_runtime: gauge_vec(
                "default_runtime",
                "Default container runtime configured. Value is always 1.",
                &["runtime"],
            ),
        };
        let _ = m.registry.register(Box::new(process::Process::new()));
        m.expose(collectors);
        m
    }

    /// Each collector by its CRI-O name.
    fn collectors(&self) -> Vec<(&'static str, Box<dyn Collector>)> {
        vec![
            (
                "image_pulls_layer_size",
                Box::new(self.pulls_layer_size.clone()),
            ),
            (
                "containers_events_dropped_total",
                Box::new(self.events_dropped.clone()),
            ),
            ("containers_oom_total", Box::new(self.ooms.clone())),
            ("processes_defunct", Box::new(process::Defunct::new())),
            ("operations_total", Box::new(self.operations.clone())),
            (
                "operations_latency_seconds",
                Box::new(self.operations_latency.clone()),
            ),
            (
                "operations_latency_seconds_total",
                Box::new(self.operations_latency_total.clone()),
            ),
            (
                "operations_errors_total",
                Box::new(self.operations_errors.clone()),
            ),
            (
                "image_pulls_bytes_total",
                Box::new(self.pulls_bytes.clone()),
            ),
            (
                "image_pulls_skipped_bytes_total",
                Box::new(self.pulls_skipped_bytes.clone()),
            ),
            (
                "image_pulls_failure_total",
                Box::new(self.pulls_failures.clone()),
            ),
            (
                "image_pulls_success_total",
                Box::new(self.pulls_successes.clone()),
            ),
            (
                "image_layer_reuse_total",
                Box::new(self.layer_reuse.clone()),
            ),
            (
                "containers_oom_count_total",
                Box::new(self.ooms_by_name.clone()),
            ),
            ("resources_stalled_at_stage", Box::new(self.stalled.clone())),
            (
                "containers_stopped_monitor_count",
                Box::new(self.stopped_monitors.clone()),
            ),
            ("default_runtime", Box::new(self.default_runtime.clone())),
        ]
    }

    /// Registers the collectors named (empty: all).
    fn expose(&self, names: &[String]) {
        for (name, collector) in self.collectors() {
            let wanted = names.is_empty() || names.iter().any(|n| stripped(n) == name);
            if wanted && let Err(e) = self.registry.register(collector) {
                tracing::warn!("metrics: collector {name}: {e}");
            }
        }
    }

    /// The exposition in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text)
        {
            tracing::warn!("metrics: {e}");
        }
        text
    }

    /// One CRI call: `method` is the RPC's name (`RunPodSandbox`), `code`
    /// its answer.
    pub fn observe_operation(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.operations.with_label_values(&[method]).inc();
        self.operations_latency
            .with_label_values(&[method])
            .set(seconds);
        self.operations_latency_total
            .with_label_values(&[method])
            .observe(seconds);
        if code != tonic::Code::Ok {
            self.operations_errors.with_label_values(&[method]).inc();
        }
    }

    /// What a pull did with one layer.
    pub fn observe_layer(&self, event: crio_image::pull::LayerEvent<'_>) {
        use crio_image::pull::LayerEvent;
        match event {
            LayerEvent::Fetched {
                media_type,
                size,
                bytes,
            } => {
                self.pulls_bytes
                    .with_label_values(&[media_type, size_bucket(size)])
                    .inc_by(bytes);
                self.pulls_layer_size.observe(size as f64);
            }
            LayerEvent::Reused { digest, size } => {
                self.pulls_skipped_bytes
                    .with_label_values(&[size_bucket(size)])
                    .inc_by(size);
                self.layer_reuse.with_label_values(&[digest]).inc();
            }
        }
    }

    /// A pull that ended: a success, or a failure counted under its reason.
    pub fn observe_pull(&self, outcome: Result<(), &crio_image::pull::PullError>) {
        match outcome {
            Ok(()) => self.pulls_successes.inc(),
            Err(e) => self
                .pulls_failures
                .with_label_values(&[failure_label(e)])
                .inc(),
        }
    }

    /// A container killed by the OOM killer, by its CRI name.
    pub fn container_oom(&self, name: &str) {
        self.ooms.inc();
        self.ooms_by_name.with_label_values(&[name]).inc();
    }

    /// A container removed: its OOM count goes (CRI-O does the same).
    pub fn container_removed(&self, name: &str) {
        let _ = self.ooms_by_name.remove_label_values(&[name]);
    }

    /// A retry found a pod's or a container's creation still at `stage`.
    pub fn stalled_at(&self, stage: &str) {
        self.stalled.with_label_values(&[stage]).inc();
    }

    /// A container whose pod's shim was found dead, by its CRI name.
    pub fn monitor_stopped(&self, name: &str) {
        self.stopped_monitors.with_label_values(&[name]).inc();
    }

    /// Events a subscriber missed (it fell behind the ring).
    pub fn events_dropped(&self, count: u64) {
        self.events_dropped.inc_by(count);
    }

    /// The default runtime handler.
    pub fn set_default_runtime(&self, runtime: &str) {
        self.default_runtime.reset();
        self.default_runtime.with_label_values(&[runtime]).set(1.0);
    }
}

/// CRI-O's label for a pull failure: the registry's answer, the
/// connection's fate, or `UNKNOWN`.
fn failure_label(e: &crio_image::pull::PullError) -> &'static str {
    use crio_image::pull::PullError;
    let text = e.to_string();
    match e {
        _ if text.contains("connection refused") => "CONNECTION_REFUSED",
        _ if text.contains("timed out") => "CONNECTION_TIMEOUT",
        PullError::NotFound(_) => "NOT_FOUND",
        PullError::Unauthorized(_) => "UNAUTHORIZED",
        PullError::Rejected(_) => "DENIED",
        _ => "UNKNOWN",
    }
}

/// CRI-O's size class of a layer (`>1 MiB`, …; decimal units as CRI-O
/// computes them).
fn size_bucket(size: u64) -> &'static str {
    const CLASSES: [(u64, &str); 11] = [
        (10_000_000_000, ">10 GiB"),
        (1_000_000_000, ">1 GiB"),
        (500_000_000, ">500 MiB"),
        (400_000_000, ">400 MiB"),
        (300_000_000, ">300 MiB"),
        (200_000_000, ">200 MiB"),
        (100_000_000, ">100 MiB"),
        (50_000_000, ">50 MiB"),
        (10_000_000, ">10 MiB"),
        (1_000_000, ">1 MiB"),
        (1_000, ">1 KiB"),
    ];
    CLASSES
        .iter()
        .find(|(floor, _)| size > *floor)
        .map_or(">0 B", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_counted_with_cri_o_names() {
        let m = Metrics::new(&[]);
        m.observe_operation("RunPodSandbox", tonic::Code::Ok, Duration::from_millis(20));
        m.observe_operation(
            "RunPodSandbox",
            tonic::Code::NotFound,
            Duration::from_millis(5),
        );
        let text = m.render();
        assert!(
            text.contains("container_runtime_crio_operations_total{operation=\"RunPodSandbox\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "container_runtime_crio_operations_errors_total{operation=\"RunPodSandbox\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("container_runtime_crio_operations_latency_seconds_total_count{operation=\"RunPodSandbox\"} 2"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(
            text.contains("container_runtime_crio_processes_defunct "),
            "{text}"
        );
    }

    #[test]
    fn collectors_restrict_what_is_exposed_by_any_prefix() {
        let m = Metrics::new(&[
            "crio_containers_oom_total".into(),
            "container_runtime_crio_image_pulls_success_total".into(),
        ]);
        m.container_oom("k8s_c");
        m.observe_operation("Version", tonic::Code::Ok, Duration::ZERO);
        let text = m.render();
        assert!(
            text.contains("container_runtime_crio_containers_oom_total 1"),
            "{text}"
        );
        assert!(
            text.contains("container_runtime_crio_image_pulls_success_total 0"),
            "{text}"
        );
        assert!(!text.contains("operations_total"), "{text}");
        assert!(!text.contains("containers_oom_count_total"), "{text}");
        // The process's own metrics are not a CRI-O collector: always there.
        assert!(text.contains("process_start_time_seconds"), "{text}");
    }

    #[test]
    fn pulls_by_layer_and_failure_reason() {
        use crio_image::pull::{LayerEvent, PullError};
        let m = Metrics::new(&[]);
        m.observe_layer(LayerEvent::Fetched {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
            size: 2_000_000,
            bytes: 2_000_000,
        });
        m.observe_layer(LayerEvent::Reused {
            digest: "sha256:ab",
            size: 5_000,
        });
        m.observe_pull(Err(&PullError::NotFound("manifest unknown".into())));
        m.observe_pull(Err(&PullError::Failed("dial: connection refused".into())));
        m.observe_pull(Ok(()));
        let text = m.render();
        for line in [
            "container_runtime_crio_image_pulls_bytes_total{mediatype=\"application/vnd.oci.image.layer.v1.tar+gzip\",size=\">1 MiB\"} 2000000",
            "container_runtime_crio_image_pulls_layer_size_count 1",
            "container_runtime_crio_image_pulls_skipped_bytes_total{size=\">1 KiB\"} 5000",
            "container_runtime_crio_image_layer_reuse_total{name=\"sha256:ab\"} 1",
            "container_runtime_crio_image_pulls_failure_total{error=\"NOT_FOUND\"} 1",
            "container_runtime_crio_image_pulls_failure_total{error=\"CONNECTION_REFUSED\"} 1",
            "container_runtime_crio_image_pulls_success_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn size_classes_as_cri_o() {
        assert_eq!(size_bucket(0), ">0 B");
        assert_eq!(size_bucket(1_001), ">1 KiB");
        assert_eq!(size_bucket(60_000_000), ">50 MiB");
        assert_eq!(size_bucket(20_000_000_000), ">10 GiB");
    }

    #[test]
    fn unknown_collectors_are_named() {
        let names = [
            "operations_total".into(),
            "crio_default_runtime".into(),
            "gpu".into(),
        ];
        assert_eq!(unknown_collectors(&names), ["gpu"]);
    }
}
