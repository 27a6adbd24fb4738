//! Finding the workspace's binaries from a test executable.

use std::path::PathBuf;

/// The path of workspace binary `name` (`crio`, `crioctl`, …), from
/// `CRIO_BIN_DIR` or the target directory the test runs from.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("CRIO_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "binary {name} not found beside {}: build the workspace (cargo build --workspace)",
                exe.display()
            )
        })
}
