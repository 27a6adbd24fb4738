//! containerd-shim-crio-v2: the per-pod shim of crio-rs.
#![deny(unsafe_code)]

fn main() {}
