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
    /// Only lines since this time: RFC 3339 (`2026-01-02T15:04:05Z`) or a
    /// duration before now (`90s`, `5m`, `1h30m`).
    #[arg(long)]
    pub since: Option<String>,
    /// The log of the previous attempt of the container.
    #[arg(short, long)]
    pub previous: bool,
}

/// `--since` as CRI nanoseconds: an RFC 3339 time, or `now` minus a Go-style
/// duration (`1h30m`, `90s`, `500ms`).
pub fn parse_since(text: &str, now: i64) -> Result<i64> {
    if let Some(t) = crio_contract::time::parse_rfc3339(text) {
        return Ok(t);
    }
    let bad =
        || anyhow::anyhow!("--since {text:?}: neither an RFC 3339 time nor a duration like 5m");
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit: i64 = match &rest[..unit_len] {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    if text.is_empty() {
        return Err(bad());
    }
    Ok(now - total)
}

/// The log of the previous attempt, as crictl finds it: kubelet names a
/// container's logs `<attempt>.log` in one directory.
pub fn previous_log(path: &str, attempt: u32) -> Result<String> {
    if attempt == 0 {
        bail!("previous terminated container not found (this is attempt 0)");
    }
    let dir = path.rfind('/').map_or("", |i| &path[..=i]);
    let ext = path
        .rfind('.')
        .filter(|i| *i > dir.len())
        .map_or("", |i| &path[i..]);
    Ok(format!("{dir}{}{ext}", attempt - 1))
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

/// One line the container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The time of its first piece, as logged.
    pub time: String,
    /// Written to stderr.
    pub stderr: bool,
    /// The text.
    pub text: String,
}

impl LogLine {
    /// As printed: the text, after the time with `timestamps`.
    pub fn render(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}", self.time, self.text)
        } else {
            self.text.clone()
        }
    }
}

/// Turns CRI log lines into the lines the container wrote: partial pieces
/// joined per stream; a last partial line is kept as it is; what is not a
/// CRI log line is skipped.
pub fn render_log(text: &str) -> Vec<LogLine> {
    use crio_contract::log::{Stream, Tag, parse_line};
    let mut out = Vec::new();
    let mut partial: [Option<LogLine>; 2] = [None, None];
    for line in text.lines().filter_map(parse_line) {
        let stderr = line.stream == Stream::Stderr;
        let slot = &mut partial[usize::from(stderr)];
        let mut acc = slot.take().unwrap_or_else(|| LogLine {
            time: line.time.to_string(),
            stderr,
            text: String::new(),
        });
        acc.text.push_str(line.text);
        if line.tag == Tag::Partial {
            *slot = Some(acc);
        } else {
            out.push(acc);
        }
    }
    out.extend(partial.into_iter().flatten());
    out
}

/// Prints lines to stdout or stderr as the container wrote them.
fn print_lines<'a>(lines: impl Iterator<Item = &'a LogLine>, timestamps: bool) {
    for l in lines {
        if l.stderr {
            eprintln!("{}", l.render(timestamps));
        } else {
            println!("{}", l.render(timestamps));
        }
    }
}

/// `logs`.
pub async fn logs(client: &mut CriClient, args: &LogsArgs) -> Result<()> {
    let resp = status(client, &args.id).await?;
    let status_now = resp.status.unwrap_or_default();
    let mut path = status_now.log_path.clone();
    if path.is_empty() {
        bail!("container {} has no log file", args.id);
    }
    if args.previous {
        let attempt = status_now.metadata.map_or(0, |m| m.attempt);
        path = previous_log(&path, attempt)?;
    }
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, crio_api::time::now_nanos()))
        .transpose()?;
    let read = || -> Result<Vec<LogLine>> {
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let mut lines = render_log(&text);
        if let Some(since) = since {
            lines.retain(|l| {
                crio_contract::time::parse_rfc3339(&l.time).is_some_and(|t| t >= since)
            });
        }
        Ok(lines)
    };
    let lines = read()?;
    let from = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    print_lines(lines[from..].iter(), args.timestamps);
    let mut printed = lines.len();
    // Following the previous attempt's log makes no sense: it is finished.
    if !args.follow || args.previous {
        return Ok(());
    }
    loop {
        let exited = status(client, &args.id)
            .await?
            .status
            .is_some_and(|s| s.state == ContainerState::ContainerExited as i32);
        let lines = read()?;
        print_lines(lines.iter().skip(printed), args.timestamps);
        printed = printed.max(lines.len());
        if exited {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_join_partials_per_stream() {
        let text = "2026-01-01T00:00:00.1Z stdout P hel\n2026-01-01T00:00:00.2Z stderr F oops\n2026-01-01T00:00:00.3Z stdout F lo\n2026-01-01T00:00:00.4Z stdout P tail";
        let lines = render_log(text);
        let texts: Vec<_> = lines.iter().map(|l| l.render(false)).collect();
        assert_eq!(texts, ["oops", "hello", "tail"]);
        assert!(lines[0].stderr && !lines[1].stderr);
        assert_eq!(lines[1].render(true), "2026-01-01T00:00:00.1Z hello");
    }

    #[test]
    fn since_and_previous() {
        let now = 10_000_000_000_000;
        assert_eq!(parse_since("90s", now).unwrap(), now - 90_000_000_000);
        assert_eq!(parse_since("1h30m", now).unwrap(), now - 5_400_000_000_000);
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z", now).unwrap(),
            1_000_000_000
        );
        for bad in ["", "5", "5 minutes", "m5", "99999999999999h"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        assert_eq!(
            previous_log("/var/log/pods/p/c/3.log", 3).unwrap(),
            "/var/log/pods/p/c/2.log"
        );
        assert!(previous_log("/var/log/pods/p/c/0.log", 0).is_err());
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
