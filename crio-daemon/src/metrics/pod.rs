//! The kubelet's CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics)
//! with CRI-O's descriptor names, help and label keys: `id`, `image`,
//! `namespace`, `pod`, `container`, then the descriptor's own. Which groups
//! are listed is `[crio.stats] included_pod_metrics`; `container_last_seen`
//! always is. Values come from a [`PodSample`] the caller read (cgroups via
//! the shims, network counters, the records); CPU times are whole seconds,
//! as CRI-O gives them.

use crio_api::cri::{
    ContainerMetrics, Metric, MetricDescriptor, MetricType, PodSandboxMetrics, UInt64Value,
};

/// CRI-O's label keys of every descriptor.
const BASE_LABELS: [&str; 5] = ["id", "image", "namespace", "pod", "container"];

/// One descriptor: its group (`""`: always on), name, help and own labels.
struct Descriptor {
    group: &'static str,
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const fn d(
    group: &'static str,
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Descriptor {
    Descriptor {
        group,
        name,
        help,
        labels,
    }
}

/// The descriptors this daemon has values for, CRI-O's wording.
const DESCRIPTORS: &[Descriptor] = &[
    d(
        "",
        "container_last_seen",
        "Last time a container was seen by the exporter",
        &[],
    ),
    d(
        "cpu",
        "container_cpu_user_seconds_total",
        "Cumulative user CPU time consumed in seconds.",
        &[],
    ),
    d(
        "cpu",
        "container_cpu_system_seconds_total",
        "Cumulative system CPU time consumed in seconds.",
        &[],
    ),
    d(
        "cpu",
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed in seconds.",
        &["cpu"],
    ),
    d(
        "disk",
        "container_fs_usage_bytes",
        "Current filesystem usage in bytes.",
        &[],
    ),
    d(
        "memory",
        "container_memory_rss",
        "Size of RSS in bytes.",
        &[],
    ),
    d(
        "memory",
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        &[],
    ),
    d(
        "memory",
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        &[],
    ),
    d(
        "network",
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        &["interface"],
    ),
    d(
        "network",
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        &["interface"],
    ),
    d(
        "network",
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        &["interface"],
    ),
    d(
        "network",
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        &["interface"],
    ),
    d(
        "oom",
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        &[],
    ),
    d(
        "process",
        "container_processes",
        "Number of processes running inside the container.",
        &[],
    ),
    d(
        "process",
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero",
        &[],
    ),
    d(
        "spec",
        "container_spec_memory_limit_bytes",
        "Memory limit for the container in bytes.",
        &[],
    ),
    d(
        "spec",
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        &[],
    ),
];

/// Whether `group` is among `included` (CRI-O's `included_pod_metrics`,
/// `all` meaning every group).
fn included(included: &[String], group: &str) -> bool {
    group.is_empty() || included.iter().any(|g| g == group || g == "all")
}

/// ListMetricDescriptors: the descriptors of the included groups.
pub fn descriptors(groups: &[String]) -> Vec<MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .filter(|d| included(groups, d.group))
        .map(|d| MetricDescriptor {
            name: d.name.to_string(),
            help: d.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.labels)
                .map(|s| s.to_string())
                .collect(),
        })
        .collect()
}

/// One container as its metrics see it.
#[derive(Debug, Clone, Default)]
pub struct ContainerSample {
    /// Container ID.
    pub id: String,
    /// The image as the container names it.
    pub image: String,
    /// The CRI name (metadata.name).
    pub name: String,
    /// Its cgroup's statistics, when it runs and its shim answered.
    pub usage: Option<crio_cgroups::Stats>,
    /// Its writable layer's bytes, as last measured.
    pub fs_usage_bytes: Option<u64>,
    /// 1 when it was OOM-killed.
    pub oom_events: u64,
    /// Start time in nanoseconds since the epoch (0: not started).
    pub started_at: i64,
}

/// A pod's network counters on its interface.
#[derive(Debug, Clone, Default)]
pub struct Interface {
    /// Name inside the pod.
    pub name: String,
    /// Bytes received, receive errors, bytes sent, transmit errors.
    pub counters: [u64; 4],
}

/// One pod as its metrics see it.
#[derive(Debug, Clone, Default)]
pub struct PodSample {
    /// Pod ID.
    pub id: String,
    /// Its namespace and name (metadata).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its network counters (none with host network).
    pub interface: Option<Interface>,
    /// Its containers.
    pub containers: Vec<ContainerSample>,
}

/// Adds metrics named `name` with `values` (extra label values, value,
/// type) when the descriptor's group is included.
struct Out<'a> {
    groups: &'a [String],
    base: [String; 5],
    now: i64,
    metrics: Vec<Metric>,
}

impl Out<'_> {
    fn add(&mut self, name: &str, extra: &[&str], value: u64, kind: MetricType) {
        let Some(desc) = DESCRIPTORS.iter().find(|d| d.name == name) else {
            return;
        };
        if !included(self.groups, desc.group) {
            return;
        }
        self.metrics.push(Metric {
            name: name.to_string(),
            timestamp: self.now,
            metric_type: kind as i32,
            label_values: self
                .base
                .iter()
                .cloned()
                .chain(extra.iter().map(|s| s.to_string()))
                .collect(),
            value: Some(UInt64Value { value }),
        });
    }
}

const SECOND: u64 = 1_000_000_000;

fn container_metrics(
    groups: &[String],
    pod: &PodSample,
    c: &ContainerSample,
    now: i64,
) -> Vec<Metric> {
    use MetricType::{Counter, Gauge};
    let mut out = Out {
        groups,
        base: [
            c.id.clone(),
            c.image.clone(),
            pod.namespace.clone(),
            pod.name.clone(),
            c.name.clone(),
        ],
        now,
        metrics: Vec::new(),
    };
    out.add("container_last_seen", &[], (now as u64) / SECOND, Gauge);
    if let Some(u) = &c.usage {
        let (total, user, system) = (u.cpu_usage_ns, u.cpu_user_ns, u.cpu_system_ns);
        out.add(
            "container_cpu_user_seconds_total",
            &[],
            user / SECOND,
            Counter,
        );
        out.add(
            "container_cpu_system_seconds_total",
            &[],
            system / SECOND,
            Counter,
        );
        out.add(
            "container_cpu_usage_seconds_total",
            &["total"],
            total / SECOND,
            Counter,
        );
        out.add("container_memory_rss", &[], u.memory_rss, Gauge);
        out.add("container_memory_usage_bytes", &[], u.memory_usage, Gauge);
        out.add(
            "container_memory_working_set_bytes",
            &[],
            u.memory_working_set,
            Gauge,
        );
        out.add("container_processes", &[], u.pids, Gauge);
        out.add("container_threads_max", &[], u.pids_limit, Gauge);
        out.add(
            "container_spec_memory_limit_bytes",
            &[],
            u.memory_limit,
            Gauge,
        );
    }
    if let Some(bytes) = c.fs_usage_bytes {
        out.add("container_fs_usage_bytes", &[], bytes, Gauge);
    }
    out.add("container_oom_events_total", &[], c.oom_events, Counter);
    if c.started_at > 0 {
        out.add(
            "container_start_time_seconds",
            &[],
            c.started_at as u64 / SECOND,
            Gauge,
        );
    }
    out.metrics
}

/// A pod's metrics: its network counters as the pod's (container `POD`,
/// as CRI-O labels them), then each container's.
pub fn pod_metrics(groups: &[String], pod: &PodSample, now: i64) -> PodSandboxMetrics {
    let mut out = Out {
        groups,
        base: [
            pod.id.clone(),
            String::new(),
            pod.namespace.clone(),
            pod.name.clone(),
            "POD".into(),
        ],
        now,
        metrics: Vec::new(),
    };
    if let Some(i) = &pod.interface {
        let names = [
            "container_network_receive_bytes_total",
            "container_network_receive_errors_total",
            "container_network_transmit_bytes_total",
            "container_network_transmit_errors_total",
        ];
        for (name, value) in names.iter().zip(i.counters) {
            out.add(name, &[&i.name], value, MetricType::Counter);
        }
    }
    PodSandboxMetrics {
        pod_sandbox_id: pod.id.clone(),
        metrics: out.metrics,
        container_metrics: pod
            .containers
            .iter()
            .map(|c| ContainerMetrics {
                container_id: c.id.clone(),
                metrics: container_metrics(groups, pod, c, now),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn descriptors_by_group_with_cri_o_label_keys() {
        let none = descriptors(&[]);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].name, "container_last_seen");
        let cpu = descriptors(&groups(&["cpu"]));
        let usage = cpu
            .iter()
            .find(|d| d.name == "container_cpu_usage_seconds_total")
            .unwrap();
        assert_eq!(
            usage.label_keys,
            ["id", "image", "namespace", "pod", "container", "cpu"]
        );
        assert!(!cpu.iter().any(|d| d.name.starts_with("container_memory")));
        assert_eq!(descriptors(&groups(&["all"])).len(), DESCRIPTORS.len());
    }

    #[test]
    fn values_in_whole_seconds_with_their_labels() {
        let pod = PodSample {
            id: "p1".into(),
            namespace: "ns".into(),
            name: "web".into(),
            interface: Some(Interface {
                name: "eth0".into(),
                counters: [100, 1, 200, 2],
            }),
            containers: vec![ContainerSample {
                id: "c1".into(),
                image: "busybox".into(),
                name: "app".into(),
                usage: Some(crio_cgroups::Stats {
                    cpu_usage_ns: 2_500_000_000,
                    cpu_user_ns: 2_000_000_000,
                    cpu_system_ns: 500_000_000,
                    memory_usage: 4096,
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        let m = pod_metrics(&groups(&["cpu", "network"]), &pod, 7 * SECOND as i64);
        let rx = &m.metrics[0];
        assert_eq!(rx.name, "container_network_receive_bytes_total");
        assert_eq!(rx.label_values, ["p1", "", "ns", "web", "POD", "eth0"]);
        assert_eq!(rx.value.as_ref().unwrap().value, 100);
        let c = &m.container_metrics[0].metrics;
        let find = |n: &str| {
            c.iter()
                .find(|m| m.name == n)
                .map(|m| m.value.as_ref().unwrap().value)
        };
        assert_eq!(find("container_cpu_usage_seconds_total"), Some(2));
        assert_eq!(find("container_cpu_user_seconds_total"), Some(2));
        assert_eq!(find("container_last_seen"), Some(7));
        assert_eq!(
            find("container_memory_usage_bytes"),
            None,
            "memory is not included"
        );
    }
}
