//! Deadlines of RunPodSandbox's steps. A CNI plugin that hangs: the call
//! fails within the configured `plugin_timeout` with an error naming the
//! plugin, the plugin and what it started are killed, DEL is tried. A pod
//! shim that never serves: the call fails at the shim's start deadline and
//! the shim is killed. Either way nothing of the pod is left.

use std::path::Path;
use std::time::{Duration, Instant};

use crio_api::cri::{ListPodSandboxRequest, NamespaceMode, RunPodSandboxRequest};
use crio_test::TestDaemon;
use crio_test::pods::pod_config;
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;

/// A plugin whose ADD starts a child that holds its output open and waits
/// for it forever; every call is logged with the plugin's and the child's
/// pids. DEL succeeds at once.
const HANG_PLUGIN: &str = r#"#!/bin/sh
case "$CNI_COMMAND" in
ADD)
    sleep 600 &
    echo "ADD $$ $!" >> LOG
    wait
    ;;
*)
    echo "$CNI_COMMAND $$" >> LOG
    ;;
esac
"#;

/// A pod shim that never serves: it records its pid and sleeps with its
/// stdout (the daemon's readiness pipe) open.
const MUTE_SHIM: &str = "#!/bin/sh\necho $$ >> LOG\nexec sleep 600\n";

/// Writes an executable script.
fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Gone, or a zombie waiting for its reaper: killed either way.
fn dead(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Every path below `dir` whose name is a 64-hex-digit ID (a pod's).
fn ids_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.split('.').next().unwrap_or("");
            if stem.len() == 64 && stem.chars().all(|c| c.is_ascii_hexdigit()) {
                found.push(path.display().to_string());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_plugin_fails_the_pod_within_its_timeout_and_leaves_nothing() {
    let plugins = tempfile::tempdir().unwrap();
    let log = plugins.path().join("calls.log");
    let binary = plugins.path().join("crio-test-hang");
    std::fs::write(
        &binary,
        HANG_PLUGIN.replace("LOG", &log.display().to_string()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let conflist = r#"{"cniVersion":"1.0.0","name":"hang","plugins":[{"type":"crio-test-hang"}]}"#;
    let dropin = format!(
        "[crio.network]\nplugin_timeout = \"2s\"\nplugin_dirs = [\"{}\"]\n",
        plugins.path().display()
    );
    let daemon = TestDaemon::start_with_files(
        "",
        &[],
        &[
            ("net.d/10-hang.conflist", conflist),
            ("conf.d/10-cni-timeout.conf", &dropin),
        ],
    )
    .unwrap();
    let mut client = daemon.client().await.unwrap();

    let started = Instant::now();
    let err = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("hung-cni", POD, POD)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("\"crio-test-hang\"")
            && err.message().contains("ADD timed out after 2s"),
        "{}",
        err.message()
    );
    // The ADD's 2 s, then the DEL's moment: far below the hang.
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(30),
        "{elapsed:?}"
    );

    // The plugin and the child holding its output were killed; DEL was
    // tried after the failed ADD.
    let calls = std::fs::read_to_string(&log).unwrap();
    let add = calls.lines().find(|l| l.starts_with("ADD ")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids: Vec<&str> = add.split_whitespace().skip(1).collect();
    assert_eq!(pids.len(), 2, "{calls}");
    while !pids.iter().all(|p| dead(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in &pids {
        assert!(dead(pid), "plugin process {pid} still runs:\n{calls}");
    }
    assert!(
        calls.lines().any(|l| l.starts_with("DEL ")),
        "no DEL after the failed ADD:\n{calls}"
    );

    nothing_left(&daemon, &mut client).await;
}

/// No pod, no record, no namespace pins, no directory, no shim.
async fn nothing_left(daemon: &TestDaemon, client: &mut crio_api::client::CriClient) {
    let pods = client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    for sub in ["root", "run", "ns"] {
        let left = ids_below(&daemon.path(sub));
        assert!(left.is_empty(), "left under {sub}: {left:?}");
    }
    assert!(
        crio_test::daemon::shims_of(&daemon.path("")).is_empty(),
        "a shim is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shim_that_never_serves_fails_the_pod_at_its_start_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, log) = (dir.path().join("mute-shim"), dir.path().join("pids"));
    script(
        &binary,
        &MUTE_SHIM.replace("LOG", &log.display().to_string()),
    );
    let dropin = format!(
        "[crio.runtime.runtimes.runc]\nmonitor_path = \"{}\"\n",
        binary.display()
    );
    let daemon =
        TestDaemon::start_with_files("", &[], &[("conf.d/10-mute-shim.conf", &dropin)]).unwrap();
    let mut client = daemon.client().await.unwrap();
    let started = Instant::now();
    // Host network: no CNI in the way, the shim's start is the step.
    let err = client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("mute-shim", NamespaceMode::Node as i32, POD)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("did not start within 10s"),
        "{}",
        err.message()
    );
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}");
    let pids = std::fs::read_to_string(&log).unwrap();
    let pid = pids.lines().next().unwrap();
    assert!(dead(pid), "the shim {pid} still runs");
    nothing_left(&daemon, &mut client).await;
}
