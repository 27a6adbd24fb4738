//! The test world of crio-rs: a real registry with images the tests build
//! themselves, and a real daemon per test with its own root, runroot, socket
//! and CNI directory, all torn down on drop, also when the test fails.
#![deny(unsafe_code)]

pub mod bins;
pub mod containerd;
pub mod containers;
pub mod cri;
pub mod daemon;
pub mod image;
pub mod images;
pub mod otlp;
pub mod package;
pub mod pods;
pub mod registry;
pub mod shim;
pub mod sign;
pub mod syscall_probe;
pub mod world;

pub use daemon::TestDaemon;
pub use registry::Registry;
