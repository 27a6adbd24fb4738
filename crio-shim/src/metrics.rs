//! A container's cgroup statistics as containerd's cgroup v1 `Metrics`
//! (whatever the host's cgroup version), the form Stats returns.

use std::path::Path;

use containerd_shim::protos::cgroups::metrics::Metrics;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::protobuf::well_known_types::any::Any;

use crate::error::{Result, ShimError};

/// The type URL of the stats the shim returns.
pub const METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";

/// The statistics of `cgroup` (a path below `root`), packed for Stats.
pub fn stats(root: &Path, cgroup: Option<&Path>) -> Result<Any> {
    let mut any = Any::new();
    any.type_url = METRICS_TYPE.to_string();
    any.value = metrics(root, cgroup)?.write_to_bytes()?;
    Ok(any)
}

/// The statistics of `cgroup` as containerd's cgroup v1 metrics.
fn metrics(root: &Path, cgroup: Option<&Path>) -> Result<Metrics> {
    let cgroup = cgroup.ok_or(ShimError::NoCgroup)?;
    let s = crio_cgroups::read(root, cgroup)
        .ok_or_else(|| ShimError::CgroupNotFound(cgroup.to_path_buf()))?;
    let mut m = Metrics::new();
    let cpu = m.cpu.mut_or_insert_default();
    let usage = cpu.usage.mut_or_insert_default();
    usage.total = s.cpu_usage_ns;
    usage.user = s.cpu_user_ns;
    usage.kernel = s.cpu_system_ns;
    let memory = m.memory.mut_or_insert_default();
    memory.rss = s.memory_rss;
    memory.total_rss = s.memory_rss;
    memory.total_inactive_file = s.memory_usage - s.memory_working_set;
    memory.pg_fault = s.page_faults;
    memory.pg_maj_fault = s.major_page_faults;
    let entry = memory.usage.mut_or_insert_default();
    entry.usage = s.memory_usage;
    entry.limit = s.memory_limit;
    let pids = m.pids.mut_or_insert_default();
    pids.current = s.pids;
    pids.limit = s.pids_limit;
    Ok(m)
}
