//! CNI networking for pods: finding the network configuration and running
//! its plugins.
#![deny(unsafe_code)]

pub mod cni;
mod conf;
pub mod netns;
mod run;
pub mod stats;
pub mod userns;

pub use conf::{
    ConfProblem, NetworkConf, NetworkError, PluginRef, SUPPORTED_VERSIONS, load_network,
};
