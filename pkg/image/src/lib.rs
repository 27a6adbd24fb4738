//! Images: references, registries.conf, trust policy, registry client and pulls.
#![deny(unsafe_code)]

pub mod auth;
pub mod policy;
pub mod reference;
pub mod registries;
pub mod sigstore;
