//! Images: references, registries.conf, trust policy, registry client and pulls.
#![deny(unsafe_code)]

pub mod auth;
pub mod client;
pub mod manifest;
#[cfg(test)]
mod peer;
pub mod policy;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod sigstore;
