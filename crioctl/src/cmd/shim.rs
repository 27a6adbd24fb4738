//! `shim`: ctr-like debugging that talks to the pod shims directly over
//! ttrpc, past the daemon: list this daemon's shims, the tasks of a pod's
//! shim with their pids and states, kill a task. Reads the daemon's state
//! directories (`--root`, `--runroot`, CRI-O's defaults).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use crio_api::task::{self, TaskClient, ttrpc};

use crate::output::table;

/// Flags of `shim`.
#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    /// The daemon's persistent state directory.
    #[arg(long, default_value = "/var/lib/crio")]
    pub root: PathBuf,
    /// The daemon's volatile state directory.
    #[arg(long, default_value = "/run/crio")]
    pub runroot: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: ShimAction,
}

/// `shim` actions.
#[derive(Debug, clap::Subcommand)]
pub enum ShimAction {
    /// List the pod shims: pod, shim pid, address.
    Ls,
    /// List the tasks of a pod's shim with their pids and states.
    Ps {
        /// Pod sandbox ID.
        pod: String,
    },
    /// Send a signal to a task.
    Kill {
        /// Pod sandbox ID.
        pod: String,
        /// Container ID.
        container: String,
        /// Signal number or name (TERM, SIGKILL, 9…).
        #[arg(short, long, default_value = "TERM")]
        signal: String,
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
    },
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(5_000_000_000)
}

/// The address file of every pod that has a shim: (pod ID, address).
fn shims(runroot: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(runroot.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let address =
                std::fs::read_to_string(e.path().join(crio_contract::pod::SHIM_ADDRESS_FILE))
                    .ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                address.trim().to_string(),
            ))
        })
        .collect();
    out.sort();
    out
}

async fn client(runroot: &Path, pod: &str) -> Result<TaskClient> {
    let (_, address) = shims(runroot)
        .into_iter()
        .find(|(id, _)| id == pod)
        .with_context(|| format!("pod {pod} has no shim under {}", runroot.display()))?;
    let c = ttrpc::asynchronous::Client::connect(&address)
        .await
        .with_context(|| format!("connect to shim {address}"))?;
    Ok(TaskClient::new(c))
}

/// Container IDs whose record names `pod`.
fn containers_of(root: &Path, pod: &str) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let data = std::fs::read(e.path().join("record.json")).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
            (v["pod_id"] == pod).then(|| v["id"].as_str().map(String::from))?
        })
        .collect();
    ids.sort();
    ids
}

/// A signal number from `9`, `KILL` or `SIGKILL`.
pub fn parse_signal(text: &str) -> Result<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return Ok(n);
    }
    let name = text.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        "CONT" => 18,
        "STOP" => 19,
        "WINCH" => 28,
        _ => bail!("unknown signal {text:?}"),
    };
    Ok(n)
}

/// `shim`.
pub async fn run(args: &ShimArgs) -> Result<()> {
    match &args.action {
        ShimAction::Ls => {
            let mut rows = Vec::new();
            for (pod, address) in shims(&args.runroot) {
                let pid = match ttrpc::asynchronous::Client::connect(&address).await {
                    Ok(c) => TaskClient::new(c)
                        .connect(ctx(), &task::ConnectRequest::default())
                        .await
                        .map(|r| r.shim_pid.to_string())
                        .unwrap_or_else(|e| format!("unreachable: {e}")),
                    Err(e) => format!("unreachable: {e}"),
                };
                rows.push(vec![pod, pid, address]);
            }
            println!("{}", table(&["POD", "SHIM PID", "ADDRESS"], &rows));
        }
        ShimAction::Ps { pod } => {
            let c = client(&args.runroot, pod).await?;
            let mut rows = Vec::new();
            for id in containers_of(&args.root, pod) {
                let req = task::StateRequest {
                    id: id.clone(),
                    ..Default::default()
                };
                let row = match c.state(ctx(), &req).await {
                    Ok(s) => {
                        let status = format!("{:?}", s.status.enum_value_or_default());
                        let exit = if status == "STOPPED" {
                            s.exit_status.to_string()
                        } else {
                            String::new()
                        };
                        vec![id, s.pid.to_string(), status, exit]
                    }
                    Err(e) => vec![id, String::new(), format!("unknown: {e}"), String::new()],
                };
                rows.push(row);
            }
            println!("{}", table(&["TASK", "PID", "STATUS", "EXIT"], &rows));
        }
        ShimAction::Kill {
            pod,
            container,
            signal,
            all,
        } => {
            let c = client(&args.runroot, pod).await?;
            let req = task::KillRequest {
                id: container.clone(),
                signal: parse_signal(signal)?,
                all: *all,
                ..Default::default()
            };
            c.kill(ctx(), &req)
                .await
                .with_context(|| format!("kill task {container}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
