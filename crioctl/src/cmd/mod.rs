//! One module per verb.

pub mod containers;
pub mod docs;
pub mod events;
pub mod images;
pub mod info;
pub mod pods;
pub mod shim;
pub mod stats;
pub mod stream;
pub mod version;

use anyhow::{Result, anyhow};
use crio_api::client::{CriClient, connect, connect_with};

use crate::{Cli, Verb};

/// Runs the verb of `cli`.
pub async fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Verb::Completion(args) => docs::completion(args),
        Verb::Man => docs::man(),
        Verb::Version => version::run(&mut runtime_client(cli).await?).await,
        Verb::Info(args) => info::run(&mut runtime_client(cli).await?, args).await,
        Verb::Pull(args) => images::pull(&mut pull_client(cli).await?, args).await,
        Verb::Images(args) => images::images(&mut image_client(cli).await?, args).await,
        Verb::Inspecti(args) => images::inspect(&mut image_client(cli).await?, args).await,
        Verb::Rmi(args) => images::rmi(&mut image_client(cli).await?, args).await,
        Verb::Runp(args) => pods::run(&mut runtime_client(cli).await?, args).await,
        Verb::Pods(args) => pods::pods(&mut runtime_client(cli).await?, args).await,
        Verb::Inspectp(args) => pods::inspect(&mut runtime_client(cli).await?, args).await,
        Verb::Stopp(args) => pods::stop(&mut runtime_client(cli).await?, args).await,
        Verb::Rmp(args) => pods::remove(&mut runtime_client(cli).await?, args).await,
        Verb::Create(args) => containers::create(&mut runtime_client(cli).await?, args).await,
        Verb::Run(args) => containers::run(&mut runtime_client(cli).await?, args).await,
        Verb::Start(args) => containers::start(&mut runtime_client(cli).await?, args).await,
        Verb::Stop(args) => containers::stop(&mut long_client(cli).await?, args).await,
        Verb::Rm(args) => containers::rm(&mut long_client(cli).await?, args).await,
        Verb::Ps(args) => containers::ps(&mut runtime_client(cli).await?, args).await,
        Verb::Inspect(args) => containers::inspect(&mut runtime_client(cli).await?, args).await,
        Verb::Logs(args) => containers::logs(&mut runtime_client(cli).await?, args).await,
        Verb::Imagefsinfo(args) => images::fs_info(&mut image_client(cli).await?, args).await,
        Verb::Update(args) => containers::update(&mut runtime_client(cli).await?, args).await,
        Verb::Stats(args) => stats::stats(&mut runtime_client(cli).await?, args).await,
        Verb::Statsp(args) => stats::pod_stats(&mut runtime_client(cli).await?, args).await,
        // A stream: not bounded by `--timeout`.
        Verb::Events(args) => events::run(&mut long_client(cli).await?, args).await,
        Verb::Shim(args) => shim::run(args).await,
        Verb::Attach(args) => stream::attach(&mut runtime_client(cli).await?, args).await,
        Verb::PortForward(args) => stream::port_forward(&mut long_client(cli).await?, args).await,
        Verb::Exec(args) => {
            let mut client = long_client(cli).await?;
            let code = if args.sync {
                containers::exec_sync(&mut client, args).await?
            } else {
                stream::exec(&mut client, args).await?
            };
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}

// The connection errors are printed flat: their message already holds the
// cause, which `{:#}` would repeat.
async fn runtime_client(cli: &Cli) -> Result<CriClient> {
    connect(&cli.runtime_endpoint, cli.timeout)
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// Stopping waits for the container's grace period: not bounded by `--timeout`.
async fn long_client(cli: &Cli) -> Result<CriClient> {
    connect_with(&cli.runtime_endpoint, cli.timeout, None)
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// Pulls are not bounded by `--timeout`, like crictl's.
async fn pull_client(cli: &Cli) -> Result<CriClient> {
    connect_with(image_endpoint(cli), cli.timeout, None)
        .await
        .map_err(|e| anyhow!("{e}"))
}

async fn image_client(cli: &Cli) -> Result<CriClient> {
    connect(image_endpoint(cli), cli.timeout)
        .await
        .map_err(|e| anyhow!("{e}"))
}

fn image_endpoint(cli: &Cli) -> &str {
    cli.image_endpoint
        .as_deref()
        .unwrap_or(&cli.runtime_endpoint)
}

/// Flags of the `inspect*` verbs.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// IDs or names of what to inspect.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: crate::output::Format,
}

/// An `inspect*` document: the status object and the verbose `info` (a JSON
/// document in a string) as JSON.
pub fn inspect_document(
    status: serde_json::Value,
    info: &std::collections::HashMap<String, String>,
) -> serde_json::Value {
    let info = info
        .get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({ "status": status, "info": info })
}

/// Prints one document as it is, several as an array.
pub fn print_documents(
    mut docs: Vec<serde_json::Value>,
    format: crate::output::Format,
) -> Result<()> {
    let value = if docs.len() == 1 {
        docs.remove(0)
    } else {
        serde_json::Value::Array(docs)
    };
    crate::output::print(&value, format)
}

/// A gRPC error as `rpc NAME: CODE: message`, the way crictl reports them.
pub fn rpc_error(rpc: &str, status: tonic::Status) -> anyhow::Error {
    anyhow!("{rpc}: {:?}: {}", status.code(), status.message())
}
