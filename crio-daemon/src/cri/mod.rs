//! The CRI gRPC services: the edge of the daemon. The trait impls
//! (`runtime_service`, `image_service`) dispatch each RPC to the module of
//! its family, which checks the request, calls the daemon's core
//! (`pod`, `container`, `images`) and maps its errors to gRPC status codes
//! (`status`).

mod container_events;
mod container_lifecycle;
mod container_status;
mod container_update;
mod image_list;
mod image_pull;
mod image_remove;
mod image_service;
mod pod_metrics;
mod runtime_config;
mod runtime_service;
pub mod runtime_status;
mod runtime_version;
mod sandbox_lifecycle;
mod sandbox_status;
mod stats;
mod status;
mod streaming;

use std::collections::HashMap;
use std::sync::Arc;

use crio_config::Config;

pub use image_service::ImageApi;
pub use runtime_service::RuntimeApi;

/// What every CRI handler can reach.
pub struct State {
    /// The configuration the daemon started with (runtime paths resolved).
    pub config: Config,
    /// The configuration as the last SIGHUP left it (`None`: as started).
    pub reloaded: parking_lot::Mutex<Option<Config>>,
    /// Images and their storage.
    pub images: Arc<crate::images::Images>,
    /// Pod sandboxes.
    pub pods: Arc<crate::pod::Pods>,
    /// Containers.
    pub containers: Arc<crate::container::Containers>,
    /// Pods with their containers (run, stop, remove).
    pub sandboxes: Arc<crate::pod::Sandboxes>,
    /// The runtime handlers: what each can do, or why it cannot run pods
    /// (probed at start).
    pub handlers: Arc<crate::handlers::Handlers>,
    /// The streaming server (exec, attach, port-forward), once started.
    pub streaming: std::sync::OnceLock<crio_streaming::Server>,
    /// Previous CPU samples, for CPU rates in stats.
    pub cpu_rates: stats::CpuRates,
    /// The AppArmor profile `crio-default`: why it could not be loaded, if so.
    pub apparmor: crate::apparmor::DefaultProfile,
}

impl State {
    /// The effective configuration: the started one with the values the
    /// last SIGHUP reloaded.
    pub fn effective_config(&self) -> Config {
        self.reloaded
            .lock()
            .clone()
            .unwrap_or_else(|| self.config.clone())
    }
}

/// Both CRI services over one shared state.
pub fn services(state: Arc<State>) -> (RuntimeApi, ImageApi) {
    (RuntimeApi::new(state.clone()), ImageApi::new(state))
}

/// The result type of every RPC handler.
pub type Rpc<T> = Result<tonic::Response<T>, tonic::Status>;

/// The result of an RPC family's handler.
type Answer<T> = Result<T, tonic::Status>;

/// Checks the `field` of a request naming a `kind` ("container", "pod
/// sandbox") by ID or unique prefix: empty is InvalidArgument; anything that
/// cannot be an ID or a prefix of one is NotFound, as CRI-O answers.
fn requested<'a>(kind: &str, field: &str, id: &'a str) -> Answer<&'a str> {
    if id.is_empty() {
        return Err(crio_api::status::invalid_field(field, "must not be empty"));
    }
    if crate::ids::is_id_or_prefix(id) {
        Ok(id)
    } else {
        Err(tonic::Status::not_found(format!(
            "{kind} {id:?} not found: not a {kind} ID"
        )))
    }
}

/// The request's container ID (or unique prefix), refused when it cannot be one.
/// The `info` map of a status response: the verbose details as JSON under
/// `info`, as crictl's `inspect` reads them; empty when not asked for.
fn verbose_info(details: Option<serde_json::Value>) -> HashMap<String, String> {
    details
        .map(|d| ("info".to_string(), d.to_string()))
        .into_iter()
        .collect()
}

/// Whether an object's labels hold every pair of a list filter's selector.
fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn container_id(id: &str) -> Answer<&str> {
    requested("container", "container_id", id)
}

/// The request's pod sandbox ID (or unique prefix), refused when it cannot be one.
fn pod_id(id: &str) -> Answer<&str> {
    requested("pod sandbox", "pod_sandbox_id", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_ids_or_prefixes() {
        let id = crate::ids::Id::random();
        assert_eq!(container_id(&id).unwrap(), &*id);
        assert!(container_id(&id[..3]).is_ok());
        let empty = pod_id("").unwrap_err();
        assert_eq!(empty.code(), crio_api::Code::InvalidArgument);
        for bad in [
            "../../etc",
            "/",
            "..",
            "ab",
            "ABCDEF",
            "abc/..",
            &format!("{id}0"),
        ] {
            let err = container_id(bad).unwrap_err();
            assert_eq!(err.code(), crio_api::Code::NotFound, "{bad}");
        }
    }
}
