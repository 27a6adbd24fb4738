//! `crioctl version`: runtime name and versions, like `crictl version`.

use anyhow::Result;
use crio_api::client::CriClient;
use crio_api::cri::VersionRequest;

use super::rpc_error;

/// Prints the Version answer.
pub async fn run(client: &mut CriClient) -> Result<()> {
    let v = client
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(|s| rpc_error("Version", s))?
        .into_inner();
    println!("Version:  {}", v.version);
    println!("RuntimeName:  {}", v.runtime_name);
    println!("RuntimeVersion:  {}", v.runtime_version);
    println!("RuntimeApiVersion:  {}", v.runtime_api_version);
    Ok(())
}
