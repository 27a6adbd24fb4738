//! Layer storage: unpacking layers safely, the layer store keyed by chain
//! ID, image records, overlay mounts, usage figures and garbage collection,
//! and the directory modes that keep local users out of them.
#![deny(unsafe_code)]

pub mod atomic;
pub mod digest;
pub mod dirs;
pub mod idmap;
pub mod images;
pub mod layers;
pub mod mount;
pub mod unpack;
pub mod usage;
pub mod usage_cache;

pub use digest::{Digest, DigestError};
pub use images::{ImageRecord, ImageStore};
pub use layers::{LayerInfo, LayerStore, LinkName, chain_id, chain_ids};
