//! ListMetricDescriptors and ListPodSandboxMetrics: the descriptors and
//! values of `crate::metrics::pod`, from each running container's cgroup
//! (through its shim, every pod asked at once, each shim with the stats
//! deadline), the pod's network counters and the records.

use std::path::Path;
use std::sync::Arc;

use crio_api::cri::{ListMetricDescriptorsResponse, ListPodSandboxMetricsResponse};

use super::{Answer, State};
use crate::container::{ContainerRecord, ContainerState};
use crate::metrics::pod::{self, ContainerSample, Interface, PodSample};
use crate::pod::PodRecord;

/// ListMetricDescriptors.
pub fn descriptors(st: &State) -> ListMetricDescriptorsResponse {
    ListMetricDescriptorsResponse {
        descriptors: pod::descriptors(&st.config.stats.included_pod_metrics),
    }
}

/// ListPodSandboxMetrics: every pod's.
pub async fn list(st: &Arc<State>) -> Answer<ListPodSandboxMetricsResponse> {
    st.containers.runnable()?;
    st.containers.observe_exit_files();
    let samples = super::stats::all_at_once(st.pods.list().into_iter().map(|p| {
        let st = st.clone();
        async move { sample(&st, &p).await }
    }))
    .await;
    let now = crio_api::time::now_nanos();
    let groups = &st.config.stats.included_pod_metrics;
    Ok(ListPodSandboxMetricsResponse {
        pod_metrics: samples
            .iter()
            .map(|s| pod::pod_metrics(groups, s, now))
            .collect(),
    })
}

async fn sample(st: &State, p: &PodRecord) -> PodSample {
    let md = p.metadata();
    let records = st
        .containers
        .filter_map(|r| (r.pod_id == p.id && !r.infra).then(|| r.clone()));
    let mut containers = Vec::with_capacity(records.len());
    for r in &records {
        containers.push(container(st, r).await);
    }
    PodSample {
        id: p.id.to_string(),
        namespace: md.namespace,
        name: md.name,
        interface: interface(p),
        containers,
    }
}

async fn container(st: &State, r: &ContainerRecord) -> ContainerSample {
    let usage = match r.state {
        ContainerState::Running => match st.containers.metrics(r).await {
            Ok(m) => Some(super::stats::cgroup_stats(&m)),
            Err(e) => {
                tracing::debug!(container = %r.id, "metrics without CPU and memory: {e}");
                None
            }
        },
        _ => None,
    };
    ContainerSample {
        id: r.id.to_string(),
        image: r.image_ref.clone(),
        name: r.metadata().name,
        usage,
        fs_usage_bytes: st
            .images
            .usage()
            .writable_layer(&r.id)
            .map(|m| m.usage.bytes),
        oom_events: u64::from(r.oom_killed),
        started_at: r.started_at,
    }
}

/// The pod's interface counters, from the host side of its CNI link.
fn interface(p: &PodRecord) -> Option<Interface> {
    let (_, result) = p.network.as_ref()?;
    let c = crio_network::stats::pod_interface(result, Path::new("/sys/class/net"))?;
    Some(Interface {
        name: c.name,
        counters: [c.rx_bytes, c.rx_errors, c.tx_bytes, c.tx_errors],
    })
}
