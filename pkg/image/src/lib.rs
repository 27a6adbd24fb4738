//! Images: references, registries.conf, trust policy, registry client and pulls.
#![deny(unsafe_code)]

pub mod auth;
pub mod registries;
pub mod reference;
