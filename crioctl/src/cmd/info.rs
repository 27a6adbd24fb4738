//! `crioctl info`: the Status answer as JSON or YAML, like `crictl info`.

use anyhow::Result;
use crio_api::client::CriClient;
use crio_api::cri::StatusRequest;
use serde_json::{Map, Value};

use super::rpc_error;
use crate::output::{Format, print};

/// Flags of `info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "json")]
    pub output: Format,
    /// Leave out the runtime's verbose information (configuration, CNI).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Prints the runtime status.
pub async fn run(client: &mut CriClient, args: &Args) -> Result<()> {
    let resp = client
        .runtime
        .status(StatusRequest {
            verbose: !args.quiet,
        })
        .await
        .map_err(|s| rpc_error("Status", s))?
        .into_inner();
    let mut out = Map::new();
    out.insert("status".into(), serde_json::to_value(&resp.status)?);
    out.insert(
        "runtimeHandlers".into(),
        serde_json::to_value(&resp.runtime_handlers)?,
    );
    // Verbose info values are JSON documents; show them as such, like crictl.
    let mut keys: Vec<_> = resp.info.keys().collect();
    keys.sort();
    for key in keys {
        let raw = &resp.info[key];
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        out.insert(key.clone(), value);
    }
    print(&Value::Object(out), args.output)
}
