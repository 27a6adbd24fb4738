//! `stats` and `statsp`: resource usage of containers and pods, like
//! crictl's.

use anyhow::Result;
use crio_api::client::CriClient;
use crio_api::cri::{
    ContainerStats, ContainerStatsFilter, ListContainerStatsRequest, ListPodSandboxStatsRequest,
    PodSandboxStatsFilter, UInt64Value,
};

use super::rpc_error;
use crate::output::{Format, table};

/// Flags of `stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only the container with this ID (prefix).
    pub id: Option<String>,
    /// Only the containers of this pod.
    #[arg(short, long)]
    pub pod: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// Flags of `statsp`.
#[derive(Debug, clap::Args)]
pub struct PodStatsArgs {
    /// Only the pod with this ID (prefix).
    pub id: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

fn v(x: &Option<UInt64Value>) -> u64 {
    x.as_ref().map_or(0, |v| v.value)
}

fn cpu_percent(nano_cores: u64) -> String {
    format!("{:.2}", nano_cores as f64 / 1e7)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1000.0 && unit + 1 < UNITS.len() {
        x /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{x:.3}{}", UNITS[unit])
    }
}

fn container_json(s: &ContainerStats) -> serde_json::Value {
    let a = s.attributes.clone().unwrap_or_default();
    let cpu = s.cpu.unwrap_or_default();
    let mem = s.memory.unwrap_or_default();
    let fs = s.writable_layer.clone().unwrap_or_default();
    serde_json::json!({
        "attributes": {"id": a.id, "metadata": a.metadata.map(|m| serde_json::json!({"name": m.name, "attempt": m.attempt})), "labels": a.labels},
        "cpu": {"timestamp": cpu.timestamp.to_string(), "usageCoreNanoSeconds": v(&cpu.usage_core_nano_seconds), "usageNanoCores": v(&cpu.usage_nano_cores)},
        "memory": {"timestamp": mem.timestamp.to_string(), "workingSetBytes": v(&mem.working_set_bytes), "usageBytes": v(&mem.usage_bytes), "rssBytes": v(&mem.rss_bytes), "availableBytes": v(&mem.available_bytes), "pageFaults": v(&mem.page_faults), "majorPageFaults": v(&mem.major_page_faults)},
        "writableLayer": {"timestamp": fs.timestamp.to_string(), "usedBytes": v(&fs.used_bytes), "inodesUsed": v(&fs.inodes_used), "fsId": {"mountpoint": fs.fs_id.map(|f| f.mountpoint).unwrap_or_default()}},
    })
}

fn container_row(s: &ContainerStats) -> Vec<String> {
    let a = s.attributes.clone().unwrap_or_default();
    let cpu = s.cpu.unwrap_or_default();
    let mem = s.memory.unwrap_or_default();
    let fs = s.writable_layer.clone().unwrap_or_default();
    vec![
        a.id.chars().take(13).collect(),
        a.metadata.map(|m| m.name).unwrap_or_default(),
        cpu_percent(v(&cpu.usage_nano_cores)),
        bytes(v(&mem.working_set_bytes)),
        bytes(v(&fs.used_bytes)),
        v(&fs.inodes_used).to_string(),
    ]
}

/// `stats`.
pub async fn stats(client: &mut CriClient, args: &StatsArgs) -> Result<()> {
    let stats = client
        .runtime
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                id: args.id.clone().unwrap_or_default(),
                pod_sandbox_id: args.pod.clone().unwrap_or_default(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| rpc_error("ListContainerStats", e))?
        .into_inner()
        .stats;
    if args.output == Format::Table {
        let rows: Vec<Vec<String>> = stats.iter().map(container_row).collect();
        println!(
            "{}",
            table(
                &["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"],
                &rows
            )
        );
        return Ok(());
    }
    let docs: Vec<serde_json::Value> = stats.iter().map(container_json).collect();
    crate::output::print(&serde_json::json!({ "stats": docs }), args.output)
}

/// `statsp`.
pub async fn pod_stats(client: &mut CriClient, args: &PodStatsArgs) -> Result<()> {
    let stats = client
        .runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: args.id.clone().unwrap_or_default(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| rpc_error("ListPodSandboxStats", e))?
        .into_inner()
        .stats;
    let rows: Vec<(String, String, u64, u64, u64, Vec<serde_json::Value>)> = stats
        .iter()
        .map(|s| {
            let a = s.attributes.clone().unwrap_or_default();
            let l = s.linux.clone().unwrap_or_default();
            let cpu = l.cpu.unwrap_or_default();
            let mem = l.memory.unwrap_or_default();
            (
                a.id,
                a.metadata.map(|m| m.name).unwrap_or_default(),
                v(&cpu.usage_nano_cores),
                v(&mem.working_set_bytes),
                l.process.map_or(0, |p| v(&p.process_count)),
                l.containers.iter().map(container_json).collect(),
            )
        })
        .collect();
    if args.output == Format::Table {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(id, name, cpu, mem, procs, _)| {
                vec![
                    id.chars().take(13).collect(),
                    name.clone(),
                    cpu_percent(*cpu),
                    bytes(*mem),
                    procs.to_string(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["POD", "NAME", "CPU %", "MEM", "PROCESSES"], &rows)
        );
        return Ok(());
    }
    let docs: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, name, cpu, mem, procs, containers)| {
            serde_json::json!({"id": id, "name": name, "usageNanoCores": cpu, "workingSetBytes": mem, "processCount": procs, "containers": containers})
        })
        .collect();
    crate::output::print(&serde_json::json!({ "stats": docs }), args.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(999), "999B");
        assert_eq!(bytes(1_500_000), "1.500MB");
        assert_eq!(cpu_percent(500_000_000), "50.00");
    }
}
