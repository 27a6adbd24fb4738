//! Images: references, registries.conf, trust policy, registry client and pulls.
#![deny(unsafe_code)]

pub mod auth;
pub mod client;
pub mod config;
pub mod files;
pub mod manifest;
#[cfg(any(test, feature = "test-peer"))]
pub mod peer;
pub mod policy;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod sigstore;
