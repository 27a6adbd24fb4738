//! The crio-rs daemon: serves the CRI over a unix socket, and owns images,
//! networking and the per-pod shims.
//!
//! Where things are: `cri` is the gRPC edge (one file per RPC family; the
//! only place errors become status codes); `pod` and `container` are the
//! core, one file per operation, returning [`error::Error`]; `shim` starts
//! and reaches the pods' shims behind the `PodShims` and `TaskClient`
//! traits (faked in unit tests); `images` holds the stores and pulls;
//! `daemon` wires them together at start.
#![deny(unsafe_code)]

pub mod apparmor;
pub mod cli;
pub mod command;
pub mod container;
pub mod cri;
pub mod daemon;
pub mod docs;
pub mod error;
pub mod events;
pub mod handlers;
pub mod ids;
pub mod images;
pub mod logging;
pub mod metrics;
pub mod namespaces;
pub mod notify;
pub mod pod;
pub mod records;
pub mod reload;
pub mod shim;
pub mod shim_binary;
pub mod socket;
pub mod status;
pub mod steps;
pub mod streaming;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod userns;
pub mod version;
