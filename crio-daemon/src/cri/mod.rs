//! The CRI gRPC services. Each RPC family lives in a module named after it;
//! the trait impls here only dispatch. RPCs whose issue has not landed answer
//! `Unimplemented` with a message naming the RPC.

mod container_status;
mod image_list;
mod image_pull;
mod image_remove;
mod image_service;
mod runtime_config;
mod runtime_service;
pub mod runtime_status;
mod runtime_version;
mod sandbox_status;
mod stats;

use std::sync::Arc;

use crio_config::Config;

pub use image_service::ImageApi;
pub use runtime_service::RuntimeApi;

/// What every CRI handler can reach.
pub struct State {
    /// The effective configuration (runtime paths resolved).
    pub config: Config,
    /// Images and their storage.
    pub images: crate::images::Images,
    /// Pod sandboxes.
    pub pods: Arc<crate::pods::Pods>,
    /// Containers.
    pub containers: crate::containers::Containers,
    /// Pod shims (None when no shim binary was found).
    pub shims: Option<Arc<crate::shim::Shims>>,
    /// What each runtime handler can do (asked at start).
    pub handler_features: std::collections::HashMap<String, crio_api::cri::RuntimeHandlerFeatures>,
    /// The streaming server (exec, attach, port-forward), once started.
    pub streaming: std::sync::OnceLock<crio_streaming::Server>,
    /// Previous CPU samples, for CPU rates in stats.
    pub cpu_rates: stats::CpuRates,
}

/// Both CRI services over one shared state.
pub fn services(state: Arc<State>) -> (RuntimeApi, ImageApi) {
    (RuntimeApi::new(state.clone()), ImageApi::new(state))
}

/// The result type of every RPC handler.
pub type Rpc<T> = Result<tonic::Response<T>, tonic::Status>;
