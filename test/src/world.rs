//! A registry with the standard images and a daemon that trusts it: the
//! starting point of the image tests.

use anyhow::Result;

use crate::images::{StandardImages, push_standard_images};
use crate::{Registry, TestDaemon};

/// A registry, its images and a daemon configured for it.
pub struct ImageWorld {
    /// The daemon (dropped first).
    pub daemon: TestDaemon,
    /// The standard images in the registry.
    pub images: StandardImages,
    /// The registry.
    pub registry: Registry,
}

impl ImageWorld {
    /// Starts a registry, pushes the standard images, and starts a daemon
    /// for it (see [`daemon_for`]).
    pub fn start(extra_registries: &str, extra_toml: &str) -> Result<Self> {
        let registry = Registry::start()?;
        let images = push_standard_images(&registry)?;
        let daemon = daemon_for(&registry, extra_registries, extra_toml, &[])?;
        Ok(Self {
            daemon,
            images,
            registry,
        })
    }
}

/// A daemon whose registries.conf (in its own directory) reaches `registry`
/// over plain HTTP and searches it for short names. `extra_registries` is
/// appended to registries.conf; `extra_toml` continues crio.conf's
/// `[crio.image]` table (and may open other tables); `files` are
/// written into the daemon's directory (`{dir}` stands for it).
pub fn daemon_for(
    registry: &Registry,
    extra_registries: &str,
    extra_toml: &str,
    files: &[(&str, &str)],
) -> Result<TestDaemon> {
    let registries = format!(
        "unqualified-search-registries = [\"{host}\"]\n\n[[registry]]\nlocation = \"{host}\"\ninsecure = true\n\n{extra_registries}\n",
        host = registry.host()
    );
    let mut all = vec![("containers/registries.conf", registries.as_str())];
    all.extend_from_slice(files);
    TestDaemon::start_with_files(
        &format!(
            "[crio.image]\nregistries_conf = \"{{dir}}/containers/registries.conf\"\n{extra_toml}"
        ),
        &[],
        &all,
    )
}
