//! The OCI runtime spec (config.json) types crio-rs writes: the `oci-spec`
//! crate's, re-exported so the daemon names them through this crate.
//!
//! Their `Default`s are youki's defaults (`Spec`, `Process`, `Linux`,
//! `Root` and `LinuxCapabilities` come with mounts, capabilities, masked
//! paths, a hostname...), so this crate sets every field of those itself.

pub use oci_spec::runtime::{
    Capability, Linux, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxHugepageLimit, LinuxIdMapping, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, LinuxSeccomp, Mount, PosixRlimit,
    PosixRlimitType, Process, Root, Spec, User,
};

/// The OCI runtime spec version written.
pub const OCI_VERSION: &str = "1.0.2";

/// A mount of `kind` from `source` at `destination`.
pub(crate) fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into())
        .set_typ(Some(kind.into()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}
