//! `crio version`: what this build is.

use serde::Serialize;

/// The CRI API version this daemon serves.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The runtime name reported over the CRI.
pub const RUNTIME_NAME: &str = "crio-rs";

/// Build information, printed by `crio version`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// crio-rs version.
    pub version: &'static str,
    /// CRI API version.
    pub runtime_api_version: &'static str,
    /// Build profile.
    pub build_profile: &'static str,
    /// OS/architecture.
    pub platform: String,
}

impl Info {
    /// Information about the running binary.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            runtime_api_version: RUNTIME_API_VERSION,
            build_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }

    /// The text form, one `Name: value` line each.
    pub fn text(&self) -> String {
        format!(
            "Version:           {}\nRuntimeApiVersion: {}\nBuildProfile:      {}\nPlatform:          {}\n",
            self.version, self.runtime_api_version, self.build_profile, self.platform
        )
    }
}
