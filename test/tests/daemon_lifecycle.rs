//! The daemon's socket and process lifecycle: start, refusal of a second
//! daemon, stale socket replacement, graceful stop.

use std::process::Command;

use crio_api::cri::VersionRequest;
use crio_test::TestDaemon;
use crio_test::bins::bin;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread")]
async fn second_daemon_on_the_same_socket_refuses_to_start() {
    let daemon = TestDaemon::start().unwrap();
    let out = Command::new(bin("crio"))
        .args(daemon.base_args())
        .output()
        .unwrap();
    assert!(!out.status.success(), "second daemon started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another daemon is already serving") && stderr.contains("crio.sock"),
        "{stderr}"
    );
    // The first daemon is unharmed.
    let mut client = daemon.client().await.unwrap();
    client
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_socket_is_replaced_after_a_crash() {
    let mut daemon = TestDaemon::start().unwrap();
    let status = daemon.signal_and_wait(Signal::SIGKILL).unwrap();
    assert!(!status.success());
    assert!(
        daemon.socket().exists(),
        "a killed daemon leaves its socket file"
    );
    daemon.spawn().unwrap();
    assert!(
        daemon.log().contains("removing stale socket"),
        "{}",
        daemon.log()
    );
    let mut client = daemon.client().await.unwrap();
    let v = client
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "crio-rs");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut daemon = TestDaemon::start().unwrap();
    // An open client connection does not hold the stop up.
    let mut client = daemon.client().await.unwrap();
    client
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap();
    let status = daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket().exists());
    assert!(
        daemon.log().contains("SIGTERM received"),
        "{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_mode_is_0660() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = TestDaemon::start().unwrap();
    let mode = std::fs::metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[test]
fn invalid_configuration_fails_start_up_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("crio.conf");
    std::fs::write(&conf, "[crio.runtime]\ndefault_runtime = \"kata\"\n").unwrap();
    let out = Command::new(bin("crio"))
        .args(["--config", conf.to_str().unwrap(), "--config-dir"])
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(conf.to_str().unwrap())
            && stderr.contains("crio.runtime.default_runtime")
            && stderr.contains("\"kata\" is not among the configured runtimes"),
        "{stderr}"
    );
}

#[test]
fn missing_default_runtime_binary_fails_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("crio.conf");
    std::fs::write(
        &conf,
        format!(
            "[crio]\nroot = \"{d}/root\"\nrunroot = \"{d}/run\"\n[crio.api]\nlisten = \"{d}/crio.sock\"\n\
             [crio.runtime.runtimes.runc]\nruntime_path = \"/nonexistent/runc\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(bin("crio"))
        .args(["--config", conf.to_str().unwrap(), "--config-dir"])
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("crio.runtime.runtimes.runc.runtime_path")
            && stderr.contains("/nonexistent/runc"),
        "{stderr}"
    );
    assert!(!dir.path().join("crio.sock").exists());
}
