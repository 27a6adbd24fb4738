//! The crio-rs daemon: serves the CRI over a unix socket, and owns images,
//! networking and the per-pod shims.
#![deny(unsafe_code)]

pub mod cli;
pub mod container;
pub mod cri;
pub mod daemon;
pub mod error;
pub mod ids;
pub mod images;
pub mod logging;
pub mod namespaces;
pub mod pod;
pub mod records;
pub mod shim;
pub mod shim_binary;
pub mod socket;
pub mod steps;
pub mod streaming;
#[cfg(test)]
mod testing;
pub mod version;
