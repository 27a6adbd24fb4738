//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats. A container's CPU and memory come from its shim
//! (the cgroup metrics of the task API), its writable layer (the overlay's
//! upper directory) as last measured off the executor; a pod's from its
//! cgroup (the kubelet's cgroup parent) and network counters from the host
//! side of its CNI link. CPU rates (`usage_nano_cores`) are computed against
//! the previous sample of the same cgroup, as kubelet expects.
//!
//! The shims are asked all at once, each with a short deadline: a shim that
//! does not answer leaves its containers' CPU and memory out (logged), and
//! the call still answers with everything else.

use crio_api::cri::{
    ContainerAttributes, ContainerStats, CpuUsage, FilesystemIdentifier, FilesystemUsage,
    LinuxPodSandboxStats, MemoryUsage, NetworkInterfaceUsage, NetworkUsage, PodSandboxAttributes,
    PodSandboxStats, ProcessUsage, UInt64Value,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{Answer, State};
use crate::container::{ContainerRecord, ContainerState};
use crate::pod::PodRecord;

/// Previous CPU samples: cgroup key → (time in ns, total usage in ns).
#[derive(Default)]
pub struct CpuRates(Mutex<HashMap<String, (i64, u64)>>);

impl CpuRates {
    /// Records a sample and returns the rate since the previous one in
    /// nanocores (None for the first sample).
    fn rate(&self, key: &str, now: i64, usage: u64) -> Option<u64> {
        let mut samples = self.0.lock();
        let prev = samples.insert(key.to_string(), (now, usage));
        let (t0, u0) = prev?;
        let dt = now.checked_sub(t0).filter(|d| *d > 0)? as u128;
        let du = usage.checked_sub(u0)? as u128;
        Some((du * 1_000_000_000 / dt) as u64)
    }

    /// Forgets the samples of objects that are gone.
    fn retain(&self, live: impl Fn(&str) -> bool) {
        self.0.lock().retain(|k, _| live(k));
    }
}

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

fn cpu(rates: &CpuRates, key: &str, now: i64, usage: u64) -> Option<CpuUsage> {
    Some(CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: value(usage),
        usage_nano_cores: rates.rate(key, now, usage).and_then(value),
    })
}

fn memory(now: i64, s: &crio_cgroups::Stats) -> Option<MemoryUsage> {
    Some(MemoryUsage {
        timestamp: now,
        working_set_bytes: value(s.memory_working_set),
        available_bytes: (s.memory_limit > 0)
            .then(|| s.memory_limit.saturating_sub(s.memory_working_set))
            .and_then(value),
        usage_bytes: value(s.memory_usage),
        rss_bytes: value(s.memory_rss),
        page_faults: value(s.page_faults),
        major_page_faults: value(s.major_page_faults),
    })
}

/// The statistics of one container: CPU and memory only while it runs.
async fn container_stats(st: &State, r: &ContainerRecord) -> ContainerStats {
    let now = crio_api::time::now_nanos();
    let upper = st.containers.upper_dir(&r.id);
    // As last measured in the background (measured at creation first).
    let layer = st.images.usage().writable_layer(&r.id);
    let (usage, measured_at) = layer.map_or((Default::default(), now), |m| {
        (m.usage, crio_api::time::unix_nanos(m.at))
    });
    let mut stats = ContainerStats {
        attributes: Some(ContainerAttributes {
            id: r.id.to_string(),
            metadata: Some(r.metadata()),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
        }),
        writable_layer: Some(FilesystemUsage {
            timestamp: measured_at,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: upper.display().to_string(),
            }),
            used_bytes: value(usage.bytes),
            inodes_used: value(usage.inodes),
        }),
        ..Default::default()
    };
    let metrics = match r.state {
        ContainerState::Running => Some(st.containers.metrics(r).await),
        _ => None,
    };
    if let Some(Err(e)) = &metrics {
        tracing::debug!(container = %r.id, "stats without CPU and memory: {e}");
    }
    if let Some(Ok(m)) = metrics {
        let s = cgroup_stats(&m);
        stats.cpu = cpu(&st.cpu_rates, &r.id, now, s.cpu_usage_ns);
        stats.memory = memory(now, &s);
    }
    stats
}

/// A container's cgroup statistics as its shim answered them.
pub(super) fn cgroup_stats(m: &crio_api::task::cgroups::metrics::Metrics) -> crio_cgroups::Stats {
    crio_cgroups::Stats {
        cpu_usage_ns: m.cpu.usage.total,
        cpu_user_ns: m.cpu.usage.user,
        cpu_system_ns: m.cpu.usage.kernel,
        memory_usage: m.memory.usage.usage,
        memory_working_set: m
            .memory
            .usage
            .usage
            .saturating_sub(m.memory.total_inactive_file),
        memory_rss: m.memory.total_rss,
        memory_limit: m.memory.usage.limit,
        page_faults: m.memory.pg_fault,
        major_page_faults: m.memory.pg_maj_fault,
        pids: m.pids.current,
        pids_limit: m.pids.limit,
    }
}

/// The statistics of `records`, their shims asked all at once (each has
/// [`STATS_DEADLINE`](crate::container::STATS_DEADLINE) to answer), in the
/// order given.
async fn containers_stats(st: &Arc<State>, records: Vec<ContainerRecord>) -> Vec<ContainerStats> {
    all_at_once(records.into_iter().map(|r| {
        let st = st.clone();
        async move { container_stats(&st, &r).await }
    }))
    .await
}

/// What `jobs` give, run all at once, in the order given (a job that
/// failed is left out, logged).
pub(super) async fn all_at_once<T: Send + 'static>(
    jobs: impl Iterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let mut running = tokio::task::JoinSet::new();
    for (i, job) in jobs.enumerate() {
        running.spawn(async move { (i, job.await) });
    }
    let mut done = Vec::new();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(d) => done.push(d),
            Err(e) => tracing::warn!("stats: {e}"),
        }
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, d)| d).collect()
}

/// ContainerStats.
pub async fn one(st: &Arc<State>, id: &str) -> Answer<ContainerStats> {
    let r = st.containers.observe(id)?;
    Ok(container_stats(st, &r).await)
}

/// ListContainerStats: the containers matching the filter (ID prefix, pod,
/// labels).
pub async fn list(
    st: &Arc<State>,
    id: &str,
    pod_id: &str,
    labels: &HashMap<String, String>,
) -> Answer<Vec<ContainerStats>> {
    st.containers.runnable()?;
    st.containers.observe_exit_files();
    let wanted = st.containers.filter_map(|r| {
        let matches = r.id.starts_with(id)
            && r.pod_id.starts_with(pod_id)
            && super::labels_match(labels, &r.config.labels);
        matches.then(|| r.clone())
    });
    let out = containers_stats(st, wanted).await;
    let records = st.containers.list();
    let pods = st.pods.list();
    st.cpu_rates
        .retain(|k| records.iter().any(|r| r.id == k) || pods.iter().any(|p| p.id == k));
    Ok(out)
}

/// The statistics of a pod: its cgroup's, and its running containers'.
async fn pod_stats(st: &Arc<State>, pod: &PodRecord) -> PodSandboxStats {
    let now = crio_api::time::now_nanos();
    let parent = pod.cgroup_parent();
    let cgroup = (!parent.is_empty())
        .then(|| {
            crio_cgroups::read(
                Path::new("/sys/fs/cgroup"),
                &crio_cgroups::cgroupfs_path(&parent),
            )
        })
        .flatten();
    st.containers.observe_exit_files();
    let running = st.containers.filter_map(|r| {
        (r.pod_id == pod.id && r.state == ContainerState::Running).then(|| r.clone())
    });
    let containers = containers_stats(st, running).await;
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: pod.id.to_string(),
            metadata: Some(pod.metadata()),
            labels: pod.config.labels.clone(),
            annotations: pod.config.annotations.clone(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: cgroup
                .as_ref()
                .and_then(|s| cpu(&st.cpu_rates, &pod.id, now, s.cpu_usage_ns)),
            memory: cgroup.as_ref().and_then(|s| memory(now, s)),
            process: cgroup.as_ref().map(|s| ProcessUsage {
                timestamp: now,
                process_count: value(s.pids),
            }),
            network: network(pod, now),
            containers,
        }),
        windows: None,
    }
}

/// PodSandboxStats.
pub async fn one_pod(st: &Arc<State>, id: &str) -> Answer<PodSandboxStats> {
    let pod = st
        .pods
        .get(id)
        .ok_or_else(|| crio_api::status::not_found("pod sandbox", id))?;
    st.containers.runnable()?;
    Ok(pod_stats(st, &pod).await)
}

/// ListPodSandboxStats: the pods matching the filter (ID prefix, labels),
/// all asked at once.
pub async fn list_pods(
    st: &Arc<State>,
    id: &str,
    labels: &HashMap<String, String>,
) -> Answer<Vec<PodSandboxStats>> {
    st.containers.runnable()?;
    let wanted = st.pods.filter_map(|pod| {
        let matches = pod.id.starts_with(id) && super::labels_match(labels, &pod.config.labels);
        matches.then(|| pod.clone())
    });
    Ok(all_at_once(wanted.into_iter().map(|pod| {
        let st = st.clone();
        async move { pod_stats(&st, &pod).await }
    }))
    .await)
}

/// The pod's network counters, from the host side of its CNI link.
fn network(pod: &PodRecord, now: i64) -> Option<NetworkUsage> {
    let (_, result) = pod.network.as_ref()?;
    let c = crio_network::stats::pod_interface(result, Path::new("/sys/class/net"))?;
    let usage = NetworkInterfaceUsage {
        name: c.name,
        rx_bytes: value(c.rx_bytes),
        rx_errors: value(c.rx_errors),
        tx_bytes: value(c.tx_bytes),
        tx_errors: value(c.tx_errors),
    };
    Some(NetworkUsage {
        timestamp: now,
        default_interface: Some(usage.clone()),
        interfaces: vec![usage],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rates_need_two_samples_and_forget_the_gone() {
        let rates = CpuRates::default();
        assert_eq!(rates.rate("c", 1_000_000_000, 500), None);
        // Half a core over one second.
        assert_eq!(
            rates.rate("c", 2_000_000_000, 500 + 500_000_000),
            Some(500_000_000)
        );
        // A counter that went backwards (a new cgroup) gives no rate.
        assert_eq!(rates.rate("c", 3_000_000_000, 10), None);
        rates.retain(|k| k != "c");
        assert_eq!(rates.rate("c", 4_000_000_000, 20), None);
    }
}
