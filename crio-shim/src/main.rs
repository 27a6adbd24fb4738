//! containerd-shim-crio-v2: the per-pod shim of crio-rs. A real containerd
//! shim v2 (start/delete actions, task API over ttrpc) that runs a pod's
//! containers through the OCI runtime, owns their stdio and records their
//! exits, so the daemon can restart without touching them.
#![deny(unsafe_code)]

mod bundle;
mod console;
mod container;
mod error;
mod events;
mod exec;
mod io;
mod log;
mod messages;
mod metrics;
mod mount;
mod oom;
mod runc;
mod runtime;
mod service;
mod shim;
mod tasks;
#[cfg(test)]
mod tests;
mod trace;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = containerd_shim::Config {
        no_setup_logger: true,
        ..Default::default()
    };
    containerd_shim::asynchronous::run::<shim::Shim>("io.containerd.crio.v2", Some(config)).await;
}
