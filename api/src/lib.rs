//! Protocol types shared by every crio-rs crate.
//!
//! The CRI v1 services and messages come from `k8s-cri` (prost/tonic), the
//! containerd task and event types from `containerd-shim-protos`
//! (rust-protobuf/ttrpc). Other crates depend on this crate only, so the two
//! protobuf stacks meet here and nowhere else.
#![deny(unsafe_code)]

pub mod client;
pub mod shim;
pub mod status;
pub mod time;

/// CRI v1: `RuntimeService`, `ImageService` and their messages.
pub mod cri {
    pub use k8s_cri::v1::*;
}

/// containerd shim v2: the task API, its events and the ttrpc plumbing.
pub mod task {
    pub use containerd_shim_protos::api::*;
    pub use containerd_shim_protos::shim_async::{
        Client, Events, EventsClient, Task, TaskClient, create_events, create_task,
    };
    pub use containerd_shim_protos::{cgroups, events, protobuf, topics, ttrpc};
}

/// The gRPC status type returned at the CRI edge.
pub use tonic::{Code, Status};
