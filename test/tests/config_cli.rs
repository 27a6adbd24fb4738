//! `crio config` and configuration loading through the real binary.

use std::process::Command;

use crio_test::bins::bin;

fn crio(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("crio")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A crio.conf as CRI-O writes it, with keys crio-rs does not know.
const CRIO_STYLE: &str = r#"
[crio]
root = "/var/lib/containers/storage"
runroot = "/run/containers/storage"
storage_driver = "overlay"
internal_wipe = true

[crio.api]
listen = "/var/run/crio/crio.sock"
stream_port = "10010"

[crio.runtime]
default_runtime = "runc"
conmon = ""
conmon_cgroup = "pod"
cgroup_manager = "cgroupfs"
default_ulimits = ["nofile=1024:2048"]

[crio.runtime.runtimes.runc]
runtime_path = "/usr/sbin/runc"
runtime_type = "oci"
runtime_root = "/run/runc"
monitor_env = ["PATH=/usr/bin:/bin"]

[crio.image]
pause_image = "registry.k8s.io/pause:3.9"

[crio.nri]
enable_nri = false
"#;

#[test]
fn crio_style_config_loads_with_warnings_and_renders_back() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("crio.conf");
    std::fs::write(&conf, CRIO_STYLE).unwrap();
    let dropins = dir.path().join("crio.conf.d");
    std::fs::create_dir(&dropins).unwrap();
    std::fs::write(
        dropins.join("10-port.conf"),
        "[crio.api]\nstream_port = \"10011\"\n",
    )
    .unwrap();

    let conf_s = conf.to_str().unwrap();
    let dropins_s = dropins.to_str().unwrap();
    let (ok, out, err) = crio(&[
        "--config",
        conf_s,
        "--config-dir",
        dropins_s,
        "--root",
        "/srv/crio",
        "config",
    ]);
    assert!(ok, "{err}");
    for key in [
        "crio.internal_wipe",
        "crio.runtime.conmon",
        "crio.runtime.conmon_cgroup",
        "crio.nri",
    ] {
        assert!(
            err.contains(&format!("{conf_s}: {key}: unknown key")),
            "missing warning for {key}: {err}"
        );
    }
    assert!(
        out.contains("stream_port = \"10011\""),
        "drop-in not applied:\n{out}"
    );
    assert!(
        out.contains("root = \"/srv/crio\""),
        "flag not applied:\n{out}"
    );
    assert!(out.contains("pause_image = \"registry.k8s.io/pause:3.9\""));

    // The rendered file loads back to the same configuration, without warnings.
    let rendered = dir.path().join("rendered.conf");
    std::fs::write(&rendered, &out).unwrap();
    let empty = dir.path().join("empty.d");
    let (ok, again, err) = crio(&[
        "--config",
        rendered.to_str().unwrap(),
        "--config-dir",
        empty.to_str().unwrap(),
        "config",
    ]);
    assert!(ok, "{err}");
    assert!(!err.contains("unknown key"), "{err}");
    assert_eq!(again, out);
}

#[test]
fn default_config_renders_and_reloads() {
    let (ok, out, err) = crio(&["config", "--default"]);
    assert!(ok, "{err}");
    assert!(out.contains("[crio.runtime.runtimes.runc]"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.conf");
    std::fs::write(&file, &out).unwrap();
    let (ok, again, err) = crio(&[
        "--config",
        file.to_str().unwrap(),
        "--config-dir",
        dir.path().join("x").to_str().unwrap(),
        "config",
    ]);
    assert!(ok, "{err}");
    assert_eq!(again, out);
}

#[test]
fn wrong_type_in_a_drop_in_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("crio.conf");
    std::fs::write(&conf, "").unwrap();
    let dropins = dir.path().join("d");
    std::fs::create_dir(&dropins).unwrap();
    let bad = dropins.join("50-bad.conf");
    std::fs::write(&bad, "[crio.runtime]\nselinux = \"yes\"\n").unwrap();
    let (ok, _, err) = crio(&[
        "--config",
        conf.to_str().unwrap(),
        "--config-dir",
        dropins.to_str().unwrap(),
        "config",
    ]);
    assert!(!ok);
    assert!(
        err.contains(bad.to_str().unwrap())
            && err.contains("crio.runtime.selinux")
            && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn version_text_and_json() {
    let (ok, out, _) = crio(&["version"]);
    assert!(
        ok && out.contains(&format!("Version:           {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let (ok, out, _) = crio(&["version", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runtimeApiVersion"], "v1");
}

/// `crio apparmor-profile` prints the profile the daemon loads, and
/// Debian's apparmor_parser (installed by scripts/install-deps.sh) compiles
/// it without loading it: this host's kernel has AppArmor off.
#[test]
fn apparmor_profile_compiles() {
    let (ok, profile, err) = crio(&["apparmor-profile"]);
    assert!(ok, "{err}");
    assert!(profile.contains("profile crio-default flags="), "{profile}");
    let parser = ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("apparmor_parser (Debian package apparmor, scripts/install-deps.sh)");
    let dir = tempfile::tempdir().unwrap();
    let compile = |text: &str| {
        let file = dir.path().join("crio-default");
        std::fs::write(&file, text).unwrap();
        Command::new(parser)
            .args(["--skip-kernel-load", "--skip-cache", "--debug"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = compile(&profile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = String::from_utf8_lossy(&out.stdout);
    assert!(built.contains("Name:\t\tcrio-default"), "{built}");
    // The parser does check: the same text with one rule broken fails.
    let broken = compile(&profile.replacen("deny mount,", "deny mount", 1));
    assert!(!broken.status.success());
}

#[test]
fn packaged_default_config_is_current() {
    let (ok, out, err) = crio(&["config", "--default"]);
    assert!(ok, "{err}");
    let packaged = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/crio.conf"
    ))
    .unwrap();
    assert_eq!(
        packaged, out,
        "packaging/crio.conf is stale: regenerate it with `crio config --default`"
    );
}
