//! Pod namespaces from the daemon's side: the pinning helper is this same
//! binary run as `crio pin-namespaces`, a fresh single-threaded process, so
//! no daemon thread ever changes namespace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crio_network::netns::{Kind, PinRequest, pin_in_helper};

/// Entry point of `crio pin-namespaces`.
pub fn helper_main(
    id: &str,
    dir: &Path,
    kinds: &[String],
    hostname: Option<String>,
    sysctls: &[String],
) -> ExitCode {
    let parsed: Option<Vec<Kind>> = kinds.iter().map(|k| Kind::parse(k)).collect();
    let Some(kinds) = parsed else {
        eprintln!("pin-namespaces: --ns takes net, ipc or uts");
        return ExitCode::FAILURE;
    };
    let req = PinRequest {
        kinds,
        namespaces_dir: dir.to_path_buf(),
        id: id.to_string(),
        hostname,
        sysctls: sysctls
            .iter()
            .filter_map(|s| {
                s.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
    };
    match pin_in_helper(&req) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the helper for `req` and waits for it; the error carries the
/// helper's message.
pub async fn pin(req: &PinRequest) -> Result<(), String> {
    let exe: PathBuf = std::env::current_exe().map_err(|e| format!("find own executable: {e}"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("pin-namespaces")
        .arg("--id")
        .arg(&req.id)
        .arg("--dir")
        .arg(&req.namespaces_dir);
    for kind in &req.kinds {
        cmd.arg("--ns").arg(kind.name());
    }
    if let Some(h) = &req.hostname {
        cmd.arg("--hostname").arg(h);
    }
    for (k, v) in &req.sysctls {
        cmd.arg("--sysctl").arg(format!("{k}={v}"));
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("run namespace helper: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pin namespaces: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
