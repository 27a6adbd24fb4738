//! CNI networking for pods: finding the network configuration and, as the
//! pod issue lands, running the plugins.
#![deny(unsafe_code)]

mod conf;

pub use conf::{NetworkConf, NetworkError, PluginRef, SUPPORTED_VERSIONS, load_network};
