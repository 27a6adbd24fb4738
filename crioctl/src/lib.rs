//! crioctl: a crictl-like CRI client for crio-rs. Each verb is one module of
//! [`cmd`]; this file holds the global flags and the dispatch.
#![deny(unsafe_code)]

pub mod cmd;
pub mod config_file;
pub mod output;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Default CRI endpoint, crio-rs's default socket.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/crio/crio.sock";

/// Client for the Kubernetes Container Runtime Interface of crio-rs.
#[derive(Debug, Parser)]
#[command(name = "crioctl", version, about)]
pub struct Cli {
    /// CRI runtime endpoint.
    #[arg(short = 'r', long, global = true, env = "CONTAINER_RUNTIME_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub runtime_endpoint: String,
    /// CRI image endpoint (defaults to the runtime endpoint). Before the
    /// verb only: `-i` after it is `exec -i`, as in crictl.
    #[arg(short = 'i', long, env = "IMAGE_SERVICE_ENDPOINT")]
    pub image_endpoint: Option<String>,
    /// Timeout of the connection and of each call, like crictl's (2s, 500ms, 1m).
    /// (No short form: `-t` belongs to `stop` and `logs`, as in crictl.)
    #[arg(long, global = true, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The verb.
    #[command(subcommand)]
    pub command: Verb,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Runtime name and versions.
    Version,
    /// Runtime status: conditions, handlers and (verbose) configuration.
    Info(cmd::info::Args),
    /// Pull an image.
    Pull(cmd::images::PullArgs),
    /// List images.
    Images(cmd::images::ImagesArgs),
    /// Show images' status and configuration.
    Inspecti(cmd::InspectArgs),
    /// Remove images.
    Rmi(cmd::images::RmiArgs),
    /// Run a pod sandbox from a config file.
    Runp(cmd::pods::RunArgs),
    /// List pod sandboxes.
    Pods(cmd::pods::ListArgs),
    /// Show pod sandboxes' status.
    Inspectp(cmd::InspectArgs),
    /// Stop pod sandboxes.
    Stopp(cmd::pods::IdsArgs),
    /// Remove pod sandboxes.
    Rmp(cmd::pods::IdsArgs),
    /// Create a container in a pod.
    Create(cmd::containers::CreateArgs),
    /// Run a pod and a container in it.
    Run(cmd::containers::RunArgs),
    /// Start containers.
    Start(cmd::containers::StartArgs),
    /// Stop containers.
    Stop(cmd::containers::StopArgs),
    /// Remove containers.
    Rm(cmd::containers::RmArgs),
    /// List containers.
    Ps(cmd::containers::PsArgs),
    /// Show containers' status.
    Inspect(cmd::InspectArgs),
    /// Print a container's log.
    Logs(cmd::containers::LogsArgs),
    /// Image filesystem usage.
    Imagefsinfo(cmd::images::FsInfoArgs),
    /// Run a command in a running container.
    Exec(cmd::containers::ExecArgs),
    /// Attach to a running container's stdio.
    Attach(cmd::stream::AttachArgs),
    /// Forward local ports to a pod's ports.
    PortForward(cmd::stream::PortForwardArgs),
    /// Update running containers' resource limits.
    Update(cmd::containers::UpdateArgs),
    /// Containers' resource usage.
    Stats(cmd::stats::StatsArgs),
    /// Pods' resource usage.
    Statsp(cmd::stats::PodStatsArgs),
    /// Container and pod events as they happen.
    Events(cmd::events::Args),
    /// Talk to the pod shims directly (debugging, like ctr).
    Shim(cmd::shim::ShimArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion(cmd::docs::CompletionArgs),
    /// Print the crioctl(1) manual page in roff.
    Man,
}

/// A `--timeout` that does not parse.
#[derive(Debug, thiserror::Error)]
enum BadTimeout {
    /// No number before the unit.
    #[error("bad timeout {0:?}")]
    Number(String),
    /// Not ms, s or m.
    #[error("bad timeout {0:?}: use ms, s or m")]
    Unit(String),
}

fn parse_timeout(text: &str) -> Result<Duration, BadTimeout> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| BadTimeout::Number(text.to_string()))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(BadTimeout::Unit(text.to_string())),
    }
}

/// Entry point of the `crioctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crioctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crioctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // Global and verb flags of the same name must not share an id.
        let cli =
            Cli::try_parse_from(["crioctl", "--timeout", "3s", "stop", "-t", "0", "abc"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(3));
        let cli = Cli::try_parse_from(["crioctl", "exec", "-s", "c1", "sh", "-c", "x"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(2));
        match cli.command {
            Verb::Exec(e) => assert_eq!(e.cmd, ["sh", "-c", "x"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_timeout("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_timeout("1h").is_err());
    }
}
