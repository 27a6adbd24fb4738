//! Version: the runtime's name and versions.

use crio_api::cri::{VersionRequest, VersionResponse};

use crate::version::{RUNTIME_API_VERSION, RUNTIME_NAME};

/// Answers Version; the request's API version is informational only.
pub fn version(_req: &VersionRequest) -> VersionResponse {
    VersionResponse {
        version: "0.1.0".into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: RUNTIME_API_VERSION.into(),
    }
}
