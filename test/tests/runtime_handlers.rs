//! Runtime handlers for real: a pod runs under the handler it names (its
//! shim, OCI runtime and runtime root), containers inherit it, also after a
//! daemon restart; a `vm` handler's containerd shim v2 is started the shim
//! v2 way; handlers that cannot run are reported and refused without a
//! trace; Status lists the default handler under the empty name. And the
//! security-context rules: run_as_group needs a user, privileged containers
//! run unconfined; CheckpointContainer says what the host lacks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crio_api::client::CriClient;
use crio_api::cri::{
    CheckpointContainerRequest, ContainerConfig, Int64Value, LinuxContainerConfig,
    LinuxContainerSecurityContext, NamespaceMode, SecurityProfile, StatusRequest,
    security_profile::ProfileType,
};
use crio_test::containers::{
    container, create, exec_sh, list_pods, pod_status, remove_pod, run_pod, setup_with_files,
    start_container,
};
use crio_test::pods::{PodWorld, pod_config, privileged_pod_config};
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;

/// The programs the handlers run, in a directory of the test's own: a
/// wrapper around runc that records each call, a runtime whose `features`
/// fails (as Debian's crun does here), our shim under another name for a
/// `vm` handler, and a seccomp profile that blocks sethostname.
struct Tools {
    dir: tempfile::TempDir,
}

impl Tools {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crio-test-tools-")
            .tempdir()
            .unwrap();
        let tools = Self { dir };
        let record = tools.record();
        tools.script(
            "wrapped-runc",
            &format!("echo \"$*\" >> {}\nexec runc \"$@\"", record.display()),
        );
        tools.script(
            "broken-runtime",
            "echo 'unknown command features' >&2\nexit 1",
        );
        std::fs::copy(
            crio_test::bins::bin("containerd-shim-crio-v2"),
            tools.vm_shim(),
        )
        .unwrap();
        std::fs::write(
            tools.path("no-sethostname.json"),
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        tools
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn script(&self, name: &str, body: &str) {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The wrapper's record of its calls, one line each.
    fn record(&self) -> PathBuf {
        self.path("wrapped-calls")
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.record()).unwrap_or_default()
    }

    /// Our shim binary, copied: the `vm` handler's containerd shim v2.
    fn vm_shim(&self) -> PathBuf {
        self.path("containerd-shim-vmtest-v2")
    }

    /// The drop-in that configures the handlers (`{dir}` is the daemon's).
    fn drop_in(&self) -> String {
        format!(
            "[crio.runtime.runtimes.wrapped]\nruntime_path = \"{wrapped}\"\nruntime_root = \"{{dir}}/wrapped\"\n\
             [crio.runtime.runtimes.vmtest]\nruntime_type = \"vm\"\nruntime_path = \"{vm}\"\nruntime_root = \"{{dir}}/vmroot\"\n\
             [crio.runtime.runtimes.broken]\nruntime_path = \"{broken}\"\n\
             [crio.runtime.runtimes.absent]\nruntime_path = \"{absent}\"\n",
            wrapped = self.path("wrapped-runc").display(),
            vm = self.vm_shim().display(),
            broken = self.path("broken-runtime").display(),
            absent = self.path("no-such-runtime").display(),
        )
    }
}

/// Containers left in the handlers' runtime roots by a failed test are
/// deleted (their processes killed) before the daemon's directory goes.
struct RuntimeRoots(Vec<PathBuf>);

impl Drop for RuntimeRoots {
    fn drop(&mut self) {
        for root in &self.0 {
            for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
                let _ = std::process::Command::new("runc")
                    .arg("--root")
                    .arg(root)
                    .args(["delete", "--force"])
                    .arg(entry.file_name())
                    .output();
            }
        }
    }
}

async fn run_pod_with(
    client: &mut CriClient,
    name: &str,
    handler: &str,
) -> Result<String, tonic::Status> {
    crio_test::containers::try_run_pod_with(client, pod_config(name, POD, POD), handler).await
}

async fn start(client: &mut CriClient, pod: &str, config: ContainerConfig) -> String {
    let id = create(client, pod, config).await.unwrap();
    start_container(client, id.clone()).await;
    id
}

/// `sh -c script` in container `id`: its exit code and stdout.
async fn exec(client: &mut CriClient, id: &str, script: &str) -> (i32, String) {
    let (code, stdout, _) = exec_sh(client, id, script).await;
    (code, stdout)
}

/// Pids of processes whose executable is `exe` and whose command line
/// mentions `needle`.
fn processes_of(exe: &Path, needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn each_pod_runs_under_its_handler() {
    let tools = Tools::new();
    let drop_in = tools.drop_in();
    let mut s = setup_with_files(&[("conf.d/50-handlers.conf", &drop_in)]).await;
    let dir = s.world.daemon.path("");
    let _roots = RuntimeRoots(vec![dir.join("wrapped"), dir.join("vmroot")]);
    let busybox = s.images.busybox.reference.clone();
    let sleeper = |name: &str| container(name, &busybox, &["sleep", "1000"]);

    // The default pod: runc under the default root, the wrapper untouched.
    let plain_pod = run_pod(&mut s.client, pod_config("plain", POD, POD)).await;
    let plain = start(&mut s.client, &plain_pod, sleeper("plain")).await;
    assert!(
        dir.join("runc").join(&plain).is_dir(),
        "runc's state of {plain}"
    );

    // The wrapped pod: every runtime call through the wrapper, its root.
    let wrapped_pod = run_pod_with(&mut s.client, "wrapped", "wrapped")
        .await
        .unwrap();
    let wrapped = start(&mut s.client, &wrapped_pod, sleeper("wrapped")).await;
    let calls = tools.calls();
    assert!(
        calls
            .lines()
            .any(|l| l.contains("create") && l.contains(&wrapped)),
        "{calls}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l.contains("start") && l.contains(&wrapped)),
        "{calls}"
    );
    assert!(
        !calls.contains(&plain) && !calls.contains(&plain_pod),
        "{calls}"
    );
    assert!(
        dir.join("wrapped").join(&wrapped).is_dir(),
        "the handler's runtime_root"
    );
    assert!(!dir.join("runc").join(&wrapped).exists());
    let status = pod_status(&mut s.client, &wrapped_pod).await;
    assert_eq!(status.runtime_handler, "wrapped");

    // After a restart, the pod's next container still runs under it.
    s.world
        .daemon
        .signal_and_wait(nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    s.world.daemon.spawn().unwrap();
    s.client = s.world.daemon.client().await.unwrap();
    let second = start(&mut s.client, &wrapped_pod, sleeper("second")).await;
    assert!(tools.calls().contains(&second), "{}", tools.calls());
    assert!(dir.join("wrapped").join(&second).is_dir());
    assert!(!tools.calls().contains(&plain));

    // The vm handler: its binary started through `start`, serving the pod.
    let vm_pod = run_pod_with(&mut s.client, "vm", "vmtest").await.unwrap();
    let shims = processes_of(&tools.vm_shim(), &vm_pod);
    assert_eq!(
        shims.len(),
        1,
        "the vm handler's shim serves the pod: {shims:?}"
    );
    let daemon_pid = s.world.daemon.pid().unwrap() as i32;
    assert_ne!(
        parent_of(shims[0]),
        daemon_pid,
        "started by its `start` action"
    );
    let in_vm = start(&mut s.client, &vm_pod, sleeper("in-vm")).await;
    assert_eq!(
        exec(&mut s.client, &in_vm, "echo hi").await,
        (0, "hi".into())
    );
    assert!(
        dir.join("vmroot").join(&in_vm).is_dir(),
        "the vm handler's root"
    );
    remove_pod(&mut s.client, &vm_pod).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_of(&tools.vm_shim(), &vm_pod).is_empty() {
        assert!(Instant::now() < deadline, "the vm shim outlived its pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for pod in [&plain_pod, &wrapped_pod] {
        remove_pod(&mut s.client, pod).await;
    }
    assert!(!dir.join("wrapped").join(&wrapped).exists());
}

/// What a refused RunPodSandbox must not leave: pods, pod directories,
/// pinned namespaces, shims.
fn traces(world: &PodWorld) -> Vec<String> {
    let listing = |rel: &str| -> Vec<String> {
        std::fs::read_dir(world.daemon.path(rel))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("{rel}/{}", e.file_name().to_string_lossy()))
            .collect()
    };
    let mut all = listing("run/pods");
    for sub in std::fs::read_dir(world.daemon.path("ns"))
        .into_iter()
        .flatten()
        .flatten()
    {
        all.extend(listing(&format!(
            "ns/{}",
            sub.file_name().to_string_lossy()
        )));
    }
    all.extend(
        crio_test::daemon::shims_of(&world.daemon.path(""))
            .iter()
            .map(|p| format!("shim {p}")),
    );
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_handlers_and_unusable_ones_are_refused() {
    let tools = Tools::new();
    let world = PodWorld::start_with(&tools.drop_in()).unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let status = client
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let features = |name: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.features)
    };
    let default = features("").expect("the default handler under the empty name");
    assert_eq!(
        Some(default),
        features("runc"),
        "the default is runc's features"
    );
    assert!(default.recursive_read_only_mounts, "runc knows rro here");
    for usable in ["wrapped", "vmtest"] {
        assert!(
            features(usable).is_some(),
            "{usable}: {:?}",
            status.runtime_handlers
        );
    }
    for unusable in ["broken", "absent"] {
        assert!(
            features(unusable).is_none(),
            "{unusable} is listed as usable"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&status.info["runtimeHandlers"]).unwrap();
    let reason = |name: &str| {
        report["handlers"][name]["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason("broken").contains("unknown command features"),
        "{report}"
    );
    assert!(reason("absent").contains("no-such-runtime"), "{report}");
    assert_eq!(report["handlers"]["wrapped"]["usable"], true);
    let log = world.daemon.log();
    assert!(
        log.contains("WARN") && log.contains("broken") && log.contains("cannot run pods"),
        "{log}"
    );

    let before = traces(&world);
    for (handler, code, cause) in [
        (
            "broken",
            Code::FailedPrecondition,
            "unknown command features",
        ),
        ("absent", Code::FailedPrecondition, "no-such-runtime"),
        ("kata", Code::InvalidArgument, "no such runtime handler"),
    ] {
        let err = run_pod_with(&mut client, handler, handler)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{handler}: {err:?}");
        assert!(
            err.message().contains(&format!("{handler:?}")) && err.message().contains(cause),
            "{handler}: {}",
            err.message()
        );
    }
    let pods = list_pods(&mut client).await;
    assert!(pods.is_empty(), "{pods:?}");
    assert_eq!(traces(&world), before, "a refused pod leaves nothing");
}

fn with_security(
    name: &str,
    image: &str,
    script: &str,
    sc: LinuxContainerSecurityContext,
) -> ContainerConfig {
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        ..container(name, image, &["sh", "-c", script])
    }
}

#[tokio::test]
async fn security_context_rules_and_checkpoint() {
    let tools = Tools::new();
    let mut s = setup_with_files(&[]).await;
    let busybox = s.images.busybox.reference.clone();
    let pod = run_pod(&mut s.client, privileged_pod_config("rules")).await;

    // run_as_group without a user.
    let lone_group = with_security(
        "group",
        &busybox,
        "sleep 1000",
        LinuxContainerSecurityContext {
            run_as_group: Some(Int64Value { value: 1000 }),
            ..Default::default()
        },
    );
    let err = create(&mut s.client, &pod, lone_group).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("config.linux.security_context.run_as_group"),
        "{}",
        err.message()
    );

    // A Localhost profile that blocks sethostname: applied to a plain
    // container, not to a privileged one, which can set the hostname.
    let profile = Some(SecurityProfile {
        profile_type: ProfileType::Localhost as i32,
        localhost_ref: tools.path("no-sethostname.json").display().to_string(),
    });
    let confined = LinuxContainerSecurityContext {
        seccomp: profile.clone(),
        ..Default::default()
    };
    let plain = start(
        &mut s.client,
        &pod,
        with_security("confined", &busybox, "sleep 1000", confined),
    )
    .await;
    let (_, seccomp) = exec(&mut s.client, &plain, "grep '^Seccomp:' /proc/self/status").await;
    assert!(seccomp.ends_with('2'), "the profile applies: {seccomp}");
    let privileged = LinuxContainerSecurityContext {
        privileged: true,
        seccomp: profile,
        ..Default::default()
    };
    let id = start(
        &mut s.client,
        &pod,
        with_security("privileged", &busybox, "sleep 1000", privileged),
    )
    .await;
    let (_, seccomp) = exec(&mut s.client, &id, "grep '^Seccomp:' /proc/self/status").await;
    assert!(seccomp.ends_with('0'), "unconfined: {seccomp}");
    assert_eq!(
        exec(&mut s.client, &id, "hostname newname && hostname").await,
        (0, "newname".into())
    );

    // CheckpointContainer: refused, naming what is missing.
    let err = s
        .client
        .runtime
        .checkpoint_container(CheckpointContainerRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("criu"), "{}", err.message());
    remove_pod(&mut s.client, &pod).await;
}
