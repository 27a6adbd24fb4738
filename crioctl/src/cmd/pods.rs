//! Pod verbs, like crictl's: `runp`, `pods`, `inspectp`, `stopp`, `rmp`.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use crio_api::client::CriClient;
use crio_api::cri::{
    ListPodSandboxRequest, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxState,
    PodSandboxStateValue, PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StopPodSandboxRequest,
};

use super::rpc_error;
use crate::output::{Format, print, table};

/// Flags of `runp`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pod sandbox config file (JSON or YAML).
    pub config: std::path::PathBuf,
    /// Runtime handler.
    #[arg(long, default_value = "")]
    pub runtime: String,
}

/// Flags of `pods`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only pods whose ID starts with this.
    #[arg(long)]
    pub id: Option<String>,
    /// Only pods with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only pods in this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only pods in this state: ready or notready.
    #[arg(short, long)]
    pub state: Option<String>,
    /// Only pods with these labels, key=value.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// Flags of `stopp` and `rmp`.
#[derive(Debug, clap::Args)]
pub struct IdsArgs {
    /// Pod IDs.
    pub ids: Vec<String>,
    /// Every pod.
    #[arg(short, long)]
    pub all: bool,
    /// Stop before removing (rmp).
    #[arg(short, long)]
    pub force: bool,
}

/// `runp`.
pub async fn run(client: &mut CriClient, args: &RunArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("read {}", args.config.display()))?;
    let config: PodSandboxConfig =
        crate::config_file::parse(&text, &args.config.display().to_string())?;
    let resp = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: args.runtime.clone(),
        })
        .await
        .map_err(|s| rpc_error("RunPodSandbox", s))?
        .into_inner();
    println!("{}", resp.pod_sandbox_id);
    Ok(())
}

async fn list(client: &mut CriClient, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
    Ok(client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter })
        .await
        .map_err(|s| rpc_error("ListPodSandbox", s))?
        .into_inner()
        .items)
}

fn state_name(state: i32) -> &'static str {
    if state == PodSandboxState::SandboxReady as i32 {
        "Ready"
    } else {
        "NotReady"
    }
}

/// `pods`.
pub async fn pods(client: &mut CriClient, args: &ListArgs) -> Result<()> {
    let state = match args
        .state
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("ready") => Some(PodSandboxState::SandboxReady),
        Some("notready") => Some(PodSandboxState::SandboxNotready),
        Some(other) => bail!("--state {other:?}: use ready or notready"),
    };
    let mut label_selector = HashMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: use key=value"))?;
        label_selector.insert(k.to_string(), v.to_string());
    }
    let filter = PodSandboxFilter {
        id: args.id.clone().unwrap_or_default(),
        state: state.map(|s| PodSandboxStateValue { state: s as i32 }),
        label_selector,
    };
    let mut items: Vec<PodSandbox> = list(client, Some(filter))
        .await?
        .into_iter()
        .filter(|p| {
            let md = p.metadata.clone().unwrap_or_default();
            args.name.as_ref().is_none_or(|n| &md.name == n)
                && args.namespace.as_ref().is_none_or(|n| &md.namespace == n)
        })
        .collect();
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if args.quiet {
        for p in &items {
            println!("{}", p.id);
        }
        return Ok(());
    }
    if args.output != Format::Table {
        return print(&serde_json::json!({ "items": items }), args.output);
    }
    let now = crio_api::time::now_nanos();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let md = p.metadata.clone().unwrap_or_default();
            let id = if args.no_trunc {
                p.id.clone()
            } else {
                p.id.chars().take(13).collect()
            };
            vec![
                id,
                format!("{} ago", ago(now - p.created_at)),
                state_name(p.state).to_string(),
                md.name,
                md.namespace,
                md.attempt.to_string(),
                if p.runtime_handler.is_empty() {
                    "(default)".into()
                } else {
                    p.runtime_handler.clone()
                },
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "POD ID",
                "CREATED",
                "STATE",
                "NAME",
                "NAMESPACE",
                "ATTEMPT",
                "RUNTIME"
            ],
            &rows
        )
    );
    Ok(())
}

/// A duration in nanoseconds as crictl shows ages: 5 seconds, 3 minutes…
pub fn ago(nanos: i64) -> String {
    let s = (nanos / 1_000_000_000).max(0);
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// `inspectp`.
pub async fn inspect(client: &mut CriClient, args: &super::InspectArgs) -> Result<()> {
    let mut out = Vec::new();
    for id in &args.ids {
        let resp = client
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .map_err(|s| rpc_error("PodSandboxStatus", s))?
            .into_inner();
        out.push(super::inspect_document(
            serde_json::to_value(&resp.status)?,
            &resp.info,
        ));
    }
    super::print_documents(out, args.output)
}

async fn targets(client: &mut CriClient, args: &IdsArgs) -> Result<Vec<String>> {
    if args.all {
        return Ok(list(client, None)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect());
    }
    if args.ids.is_empty() {
        bail!("name at least one pod ID, or use --all");
    }
    Ok(args.ids.clone())
}

/// `stopp`.
pub async fn stop(client: &mut CriClient, args: &IdsArgs) -> Result<()> {
    for id in targets(client, args).await? {
        client
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(|s| rpc_error("StopPodSandbox", s))?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

/// `rmp`.
pub async fn remove(client: &mut CriClient, args: &IdsArgs) -> Result<()> {
    for id in targets(client, args).await? {
        if !args.force {
            let status = client
                .runtime
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id.clone(),
                    verbose: false,
                })
                .await
                .map_err(|s| rpc_error("PodSandboxStatus", s))?
                .into_inner();
            if status
                .status
                .is_some_and(|s| s.state == PodSandboxState::SandboxReady as i32)
            {
                bail!("pod sandbox {id} is running, stop it first or use -f");
            }
        }
        client
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(|s| rpc_error("RemovePodSandbox", s))?;
        println!("Removed sandbox {id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(ago(1_000_000_000), "1 second");
        assert_eq!(ago(59_000_000_000), "59 seconds");
        assert_eq!(ago(120_000_000_000), "2 minutes");
        assert_eq!(ago(7_200_000_000_000), "2 hours");
        assert_eq!(ago(-5), "0 seconds");
    }
}
