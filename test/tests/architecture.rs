//! The house rules of docs/architecture.md that a machine can check: which
//! of our crates may depend on which, and that the daemon↔shim contract is
//! spelled only in `pkg/contract`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Our crates and the crates of ours each may depend on (normal
/// dependencies); the table of docs/architecture.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("crio-contract", &[]),
    ("crio-saferoot", &[]),
    ("crio-cgroups", &[]),
    ("crio-attach", &[]),
    ("crio-api", &[]),
    ("crio-config", &[]),
    ("crio-network", &[]),
    ("crio-streaming", &[]),
    ("crio-storage", &["crio-saferoot"]),
    ("crio-image", &["crio-storage"]),
    ("crio-spec", &["crio-api", "crio-config", "crio-saferoot"]),
    (
        "crio-daemon",
        &[
            "crio-api",
            "crio-attach",
            "crio-cgroups",
            "crio-config",
            "crio-contract",
            "crio-image",
            "crio-network",
            "crio-saferoot",
            "crio-spec",
            "crio-storage",
            "crio-streaming",
        ],
    ),
    (
        "crio-shim",
        &["crio-attach", "crio-cgroups", "crio-contract"],
    ),
    ("crioctl", &["crio-api", "crio-contract", "crio-streaming"]),
    (
        "crio-test",
        &[
            "crio-api",
            "crio-attach",
            "crio-contract",
            "crio-image",
            "crio-network",
            "crio-storage",
            "crio-streaming",
        ],
    ),
];

/// Crates the shim links that must stay free of any dependency (std only).
const STD_ONLY: &[&str] = &["crio-contract", "crio-cgroups"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test/ has a parent")
        .to_path_buf()
}

/// Each workspace member's normal dependencies, from `cargo metadata`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_string())
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_downward() {
    let deps = dependencies();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let ours: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
    for (name, uses) in &deps {
        let Some(may) = allowed.get(name.as_str()) else {
            panic!("{name} is not in the table of docs/architecture.md and this test");
        };
        for dep in uses.iter().filter(|d| ours.contains(d.as_str())) {
            assert!(
                may.contains(&dep.as_str()),
                "{name} depends on {dep}, which docs/architecture.md does not allow"
            );
        }
    }
    for name in STD_ONLY {
        assert_eq!(deps[*name], BTreeSet::new(), "{name} must stay std only");
    }
}

/// Rust sources of a directory, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_contract_is_spelled_only_in_its_crate() {
    // The values of the contract's constants, quoted as a literal would be.
    let contract = std::fs::read_to_string(workspace_root().join("pkg/contract/src/lib.rs"))
        .expect("contract source");
    let literals: Vec<String> = contract
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| {
            l.split_once("&str = ")
                .map(|(_, v)| v.trim_end_matches(';').to_string())
        })
        // Bare words like "exit" also occur as plain English in messages.
        .filter(|v| v.contains('.') || v.contains('_'))
        .collect();
    assert!(
        literals.len() >= 8,
        "found the contract's constants: {literals:?}"
    );
    let mut files = Vec::new();
    for dir in [
        "crio-daemon/src",
        "crio-shim/src",
        "crioctl/src",
        "test/src",
        "pkg",
    ] {
        sources(&workspace_root().join(dir), &mut files);
    }
    let contract_dir = workspace_root().join("pkg/contract");
    for file in files.iter().filter(|f| !f.starts_with(&contract_dir)) {
        let text = std::fs::read_to_string(file).expect("source");
        for literal in &literals {
            assert!(
                !text.contains(literal.as_str()),
                "{} spells the contract literal {literal}; use crio_contract",
                file.display()
            );
        }
    }
}
