//! Container verbs, like crictl's: `create`, `start`, `ps`, `inspect`,
//! `stop`, `rm`, `logs`, `run`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use crio_api::client::CriClient;
use crio_api::cri::{
    ContainerConfig, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest,
    CreateContainerRequest, ListContainersRequest, PodSandboxConfig, RemoveContainerRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
};

use super::rpc_error;
use crate::output::{Format, print, table};

/// Flags of `create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The pod sandbox ID.
    pub pod: String,
    /// Container config file (JSON or YAML).
    pub container_config: PathBuf,
    /// Pod sandbox config file (JSON or YAML).
    pub pod_config: PathBuf,
}

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Container config file.
    pub container_config: PathBuf,
    /// Pod sandbox config file.
    pub pod_config: PathBuf,
}

/// Flags of `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Container IDs.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// Flags of `stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Container IDs.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Seconds to wait before killing.
    #[arg(short = 't', long = "time", default_value = "10")]
    pub grace: i64,
}

/// Flags of `rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Container IDs.
    pub ids: Vec<String>,
    /// Every container.
    #[arg(short, long)]
    pub all: bool,
    /// Stop running containers first.
    #[arg(short, long)]
    pub force: bool,
}

/// Flags of `ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Every container, also exited ones.
    #[arg(short, long)]
    pub all: bool,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Only containers of this pod.
    #[arg(short, long)]
    pub pod: Option<String>,
    /// Only containers with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only containers in this state: created, running, exited.
    #[arg(short, long)]
    pub state: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// Flags of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Container ID.
    pub id: String,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
}

fn read<T: serde::de::DeserializeOwned>(path: &PathBuf) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    crate::config_file::parse(&text, &path.display().to_string())
}

async fn create_in(
    client: &mut CriClient,
    pod: &str,
    config: ContainerConfig,
    pod_config: PodSandboxConfig,
) -> Result<String> {
    Ok(client
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await
        .map_err(|s| rpc_error("CreateContainer", s))?
        .into_inner()
        .container_id)
}

/// `create`.
pub async fn create(client: &mut CriClient, args: &CreateArgs) -> Result<()> {
    let id = create_in(
        client,
        &args.pod,
        read(&args.container_config)?,
        read(&args.pod_config)?,
    )
    .await?;
    println!("{id}");
    Ok(())
}

/// `run`: a pod, a container in it, started.
pub async fn run(client: &mut CriClient, args: &RunArgs) -> Result<()> {
    let pod_config: PodSandboxConfig = read(&args.pod_config)?;
    let pod = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|s| rpc_error("RunPodSandbox", s))?
        .into_inner()
        .pod_sandbox_id;
    let id = create_in(client, &pod, read(&args.container_config)?, pod_config).await?;
    start(
        client,
        &StartArgs {
            ids: vec![id.clone()],
        },
    )
    .await?;
    Ok(())
}

/// `start`.
pub async fn start(client: &mut CriClient, args: &StartArgs) -> Result<()> {
    for id in &args.ids {
        client
            .runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(|s| rpc_error("StartContainer", s))?;
        println!("{id}");
    }
    Ok(())
}

/// `stop`.
pub async fn stop(client: &mut CriClient, args: &StopArgs) -> Result<()> {
    for id in &args.ids {
        client
            .runtime
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: args.grace,
            })
            .await
            .map_err(|s| rpc_error("StopContainer", s))?;
        println!("{id}");
    }
    Ok(())
}

async fn list(
    client: &mut CriClient,
    filter: ContainerFilter,
) -> Result<Vec<crio_api::cri::Container>> {
    Ok(client
        .runtime
        .list_containers(ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .map_err(|s| rpc_error("ListContainers", s))?
        .into_inner()
        .containers)
}

/// `rm`.
pub async fn rm(client: &mut CriClient, args: &RmArgs) -> Result<()> {
    let targets = if args.all {
        list(client, ContainerFilter::default()).await?
    } else if args.ids.is_empty() {
        bail!("name at least one container ID, or use --all");
    } else {
        let mut found = Vec::new();
        for id in &args.ids {
            found.extend(
                list(
                    client,
                    ContainerFilter {
                        id: id.clone(),
                        ..Default::default()
                    },
                )
                .await?,
            );
        }
        found
    };
    for c in targets {
        if c.state == ContainerState::ContainerRunning as i32 && !args.force {
            bail!("container {} is running, stop it first or use -f", c.id);
        }
        client
            .runtime
            .remove_container(RemoveContainerRequest {
                container_id: c.id.clone(),
            })
            .await
            .map_err(|s| rpc_error("RemoveContainer", s))?;
        println!("{}", c.id);
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created",
        Ok(ContainerState::ContainerRunning) => "Running",
        Ok(ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// `ps`.
pub async fn ps(client: &mut CriClient, args: &PsArgs) -> Result<()> {
    let state = match args
        .state
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None if args.all => None,
        None => Some(ContainerState::ContainerRunning),
        Some("created") => Some(ContainerState::ContainerCreated),
        Some("running") => Some(ContainerState::ContainerRunning),
        Some("exited") => Some(ContainerState::ContainerExited),
        Some(other) => bail!("--state {other:?}: use created, running or exited"),
    };
    let filter = ContainerFilter {
        pod_sandbox_id: args.pod.clone().unwrap_or_default(),
        state: state.map(|s| ContainerStateValue { state: s as i32 }),
        ..Default::default()
    };
    let mut items: Vec<_> = list(client, filter)
        .await?
        .into_iter()
        .filter(|c| {
            args.name
                .as_ref()
                .is_none_or(|n| c.metadata.as_ref().is_some_and(|m| &m.name == n))
        })
        .collect();
    items.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if args.quiet {
        for c in &items {
            println!("{}", c.id);
        }
        return Ok(());
    }
    if args.output != Format::Table {
        return print(&serde_json::json!({ "containers": items }), args.output);
    }
    let now = crio_api::time::now_nanos();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|c| {
            let md = c.metadata.clone().unwrap_or_default();
            vec![
                c.id.chars().take(13).collect(),
                c.image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                format!("{} ago", super::pods::ago(now - c.created_at)),
                state_name(c.state).into(),
                md.name,
                md.attempt.to_string(),
                c.pod_sandbox_id.chars().take(13).collect(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "CONTAINER",
                "IMAGE",
                "CREATED",
                "STATE",
                "NAME",
                "ATTEMPT",
                "POD ID"
            ],
            &rows
        )
    );
    Ok(())
}

async fn status(
    client: &mut CriClient,
    id: &str,
) -> Result<crio_api::cri::ContainerStatusResponse> {
    Ok(client
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .map_err(|s| rpc_error("ContainerStatus", s))?
        .into_inner())
}

/// `inspect`.
pub async fn inspect(client: &mut CriClient, args: &super::InspectArgs) -> Result<()> {
    let mut out = Vec::new();
    for id in &args.ids {
        let resp = status(client, id).await?;
        out.push(super::inspect_document(
            serde_json::to_value(&resp.status)?,
            &resp.info,
        ));
    }
    super::print_documents(out, args.output)
}

/// Turns CRI log lines into the text the container wrote: partial lines
/// joined, optionally with the timestamp of each line's first piece.
pub fn render_log(text: &str, timestamps: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut partial: Option<(String, String)> = None;
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(ts), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let content = parts.next().unwrap_or("");
        let (start_ts, mut acc) = partial
            .take()
            .unwrap_or_else(|| (ts.to_string(), String::new()));
        acc.push_str(content);
        if tag == "P" {
            partial = Some((start_ts, acc));
        } else {
            out.push(if timestamps {
                format!("{start_ts} {acc}")
            } else {
                acc
            });
        }
    }
    if let Some((ts, acc)) = partial {
        out.push(if timestamps {
            format!("{ts} {acc}")
        } else {
            acc
        });
    }
    out
}

/// `logs`.
pub async fn logs(client: &mut CriClient, args: &LogsArgs) -> Result<()> {
    let resp = status(client, &args.id).await?;
    let path = resp.status.map(|s| s.log_path).unwrap_or_default();
    if path.is_empty() {
        bail!("container {} has no log file", args.id);
    }
    let mut printed = 0;
    loop {
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let lines = render_log(&text, args.timestamps);
        let from = match args.tail {
            Some(n) if printed == 0 => lines.len().saturating_sub(n),
            _ => printed,
        };
        for l in &lines[from.min(lines.len())..] {
            println!("{l}");
        }
        printed = lines.len();
        if !args.follow {
            return Ok(());
        }
        let s = status(client, &args.id).await?;
        if s.status
            .is_some_and(|s| s.state == ContainerState::ContainerExited as i32)
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for l in render_log(&text, args.timestamps).iter().skip(printed) {
                println!("{l}");
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_join_partials() {
        let text = "2026-01-01T00:00:00.1Z stdout P hel\n2026-01-01T00:00:00.2Z stdout F lo\n2026-01-01T00:00:00.3Z stderr F oops\n2026-01-01T00:00:00.4Z stdout P tail";
        assert_eq!(render_log(text, false), ["hello", "oops", "tail"]);
        assert_eq!(render_log(text, true)[0], "2026-01-01T00:00:00.1Z hello");
    }
}

/// Flags of `update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Container IDs.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_share: Option<i64>,
    /// CPU CFS quota in microseconds.
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<i64>,
    /// CPUs the container may use (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
}

/// `update`: new resource limits for running containers.
pub async fn update(client: &mut CriClient, args: &UpdateArgs) -> Result<()> {
    let linux = crio_api::cri::LinuxContainerResources {
        memory_limit_in_bytes: args.memory.unwrap_or(0),
        cpu_shares: args.cpu_share.unwrap_or(0),
        cpu_quota: args.cpu_quota.unwrap_or(0),
        cpu_period: args.cpu_period.unwrap_or(0),
        cpuset_cpus: args.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: args.cpuset_mems.clone().unwrap_or_default(),
        ..Default::default()
    };
    for id in &args.ids {
        client
            .runtime
            .update_container_resources(crio_api::cri::UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: Some(linux.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| rpc_error("UpdateContainerResources", e))?;
        println!("{id}");
    }
    Ok(())
}

/// Flags of `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Run synchronously through ExecSync (the output after the end).
    #[arg(short, long)]
    pub sync: bool,
    /// Send stdin.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run in a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Streaming transport (not with -s).
    #[arg(long, value_enum, default_value = "spdy")]
    pub transport: super::stream::TransportArg,
    /// Seconds ExecSync may take (0: no limit). (`--timeout` is the global
    /// connection timeout.)
    #[arg(long, default_value = "0")]
    pub exec_timeout: i64,
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `exec -s`: runs a command through ExecSync, prints its output and
/// returns its exit code.
pub async fn exec_sync(client: &mut CriClient, args: &ExecArgs) -> Result<i32> {
    let resp = client
        .runtime
        .exec_sync(crio_api::cri::ExecSyncRequest {
            container_id: args.id.clone(),
            cmd: args.cmd.clone(),
            timeout: args.exec_timeout,
        })
        .await
        .map_err(|e| rpc_error("ExecSync", e))?
        .into_inner();
    use std::io::Write;
    std::io::stdout().write_all(&resp.stdout)?;
    std::io::stderr().write_all(&resp.stderr)?;
    Ok(resp.exit_code)
}
