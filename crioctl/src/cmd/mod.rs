//! One module per verb.

pub mod info;
pub mod version;

use anyhow::{Result, anyhow};
use crio_api::client::{CriClient, connect};

use crate::{Cli, Verb};

/// Runs the verb of `cli`.
pub async fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Verb::Version => version::run(&mut runtime_client(cli).await?).await,
        Verb::Info(args) => info::run(&mut runtime_client(cli).await?, args).await,
    }
}

async fn runtime_client(cli: &Cli) -> Result<CriClient> {
    connect(&cli.runtime_endpoint, cli.timeout)
        .await
        .map_err(|e| anyhow!(e))
}

/// A gRPC error as `rpc NAME: CODE: message`, the way crictl reports them.
pub fn rpc_error(rpc: &str, status: tonic::Status) -> anyhow::Error {
    anyhow!("{rpc}: {:?}: {}", status.code(), status.message())
}
