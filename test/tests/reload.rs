//! SIGHUP reloads the reloadable options (log level, pause image) from the
//! files the daemon started with, refusing a broken file; sd_notify tells
//! the service manager the daemon is ready, alive, and stopping.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use crio_api::cri::{NamespaceMode, VersionRequest};
use crio_test::images::push_standard_images;
use crio_test::pods::{PodWorld, pod_config};
use crio_test::{Registry, TestDaemon};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const POD: i32 = NamespaceMode::Pod as i32;
const DROP_IN: &str = "conf.d/50-reload.conf";

fn shared_pid_pod(name: &str) -> crio_api::cri::PodSandboxConfig {
    let mut config = pod_config(name, POD, POD);
    let sc = config.linux.as_mut().unwrap().security_context.as_mut();
    sc.unwrap().namespace_options.as_mut().unwrap().pid = POD;
    config
}

fn drop_in(level: &str, pause: &str) -> String {
    format!("[crio.runtime]\nlog_level = \"{level}\"\n[crio.image]\npause_image = \"{pause}\"\n")
}

/// Sends SIGHUP and waits until the log holds `needle` (at most 10 s).
fn hup_and_wait_for(daemon: &TestDaemon, needle: &str) {
    kill(Pid::from_raw(daemon.pid().unwrap() as i32), Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn run_shared_pid_pod(
    client: &mut crio_api::client::CriClient,
    name: &str,
) -> Result<String, tonic::Status> {
    run_pod_with(client, name, "").await
}

/// Runs a pod with a pause container under runtime handler `handler`.
async fn run_pod_with(
    client: &mut crio_api::client::CriClient,
    name: &str,
    handler: &str,
) -> Result<String, tonic::Status> {
    crio_test::containers::try_run_pod_with(client, shared_pid_pod(name), handler).await
}

/// The daemon's `/config` answer, through `crio status config`.
fn effective_config(daemon: &TestDaemon) -> String {
    let out = std::process::Command::new(crio_test::bins::bin("crio"))
        .args(["status", "--socket"])
        .arg(daemon.socket())
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success(), "crio status config: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_log_level_and_pause_image() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let absent = format!("{}/absent/pause:1", registry.host());
    let first = drop_in("info", &absent);
    let world = PodWorld::start_with_registry_files(&registry, "", &[(DROP_IN, &first)]).unwrap();
    let mut client = world.daemon.client().await.unwrap();

    // Before: the pause image is the absent one, and debug lines are off.
    let err = run_shared_pid_pod(&mut client, "before").await.unwrap_err();
    assert!(err.message().contains(&absent), "{err}");
    assert!(
        !world.daemon.log().contains("DEBUG"),
        "{}",
        world.daemon.log()
    );

    let second = drop_in("debug", &images.pause.reference);
    std::fs::write(world.daemon.path(DROP_IN), second).unwrap();
    hup_and_wait_for(&world.daemon, "SIGHUP: reloaded registries");
    let log = world.daemon.log();
    assert!(
        log.contains("crio.runtime.log_level: \"info\" -> \"debug\""),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "crio.image.pause_image: \"{absent}\" -> \"{}\"",
            images.pause.reference
        )),
        "{log}"
    );

    // The status API's /config shows the reloaded values.
    let config = effective_config(&world.daemon);
    let lines: Vec<&str> = config.lines().collect();
    let want = format!("pause_image = \"{}\"", images.pause.reference);
    assert!(lines.contains(&want.as_str()), "{want} in {config}");
    assert!(lines.contains(&"log_level = \"debug\""), "{config}");

    // After: a new pod's infra container runs the new pause image, and the
    // pod's start is logged at debug.
    let id = run_shared_pid_pod(&mut client, "after").await.unwrap();
    assert!(world.daemon.log().contains("pod shim started"));
    crio_test::containers::remove_pod(&mut client, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_on_sighup_keeps_the_old_values() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let first = drop_in("info", &images.pause.reference);
    let world = PodWorld::start_with_registry_files(&registry, "", &[(DROP_IN, &first)]).unwrap();
    let mut client = world.daemon.client().await.unwrap();

    // A second drop-in with an unknown level and another pause image: the
    // whole reload is refused, naming the file and the key.
    let broken = drop_in("loud", &format!("{}/absent/pause:1", registry.host()));
    std::fs::write(world.daemon.path("conf.d/60-broken.conf"), broken).unwrap();
    hup_and_wait_for(&world.daemon, "reload refused");
    let log = world.daemon.log();
    let refusal = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(refusal.contains("60-broken.conf"), "{refusal}");
    assert!(refusal.contains("crio.runtime.log_level"), "{refusal}");

    // The old pause image and level stay: the pod starts, no debug lines.
    let id = run_shared_pid_pod(&mut client, "kept").await.unwrap();
    assert!(
        !world.daemon.log().contains("DEBUG"),
        "{}",
        world.daemon.log()
    );
    crio_test::containers::remove_pod(&mut client, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_adds_a_runtime_handler() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let first = drop_in("info", &images.pause.reference);
    let world = PodWorld::start_with_registry_files(&registry, "", &[(DROP_IN, &first)]).unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let err = run_pod_with(&mut client, "early", "extra")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // A drop-in adds handler `extra`: runc with a root of its own.
    let runc = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v runc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let root = world.daemon.path("extra-root");
    let extra = format!(
        "[crio.runtime.runtimes.extra]\nruntime_path = \"{}\"\nruntime_root = \"{}\"\n",
        runc.trim(),
        root.display()
    );
    std::fs::write(world.daemon.path("conf.d/70-extra.conf"), extra).unwrap();
    hup_and_wait_for(
        &world.daemon,
        "crio.runtime.runtimes.extra: runtime handler added",
    );

    let status = client
        .runtime
        .status(crio_api::cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(names.contains(&"extra"), "{names:?}");
    let config = effective_config(&world.daemon);
    assert!(config.contains("[crio.runtime.runtimes.extra]"), "{config}");

    // A pod asking for it runs, its pause container in the handler's root.
    let id = run_pod_with(&mut client, "late", "extra").await.unwrap();
    let states: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert!(!states.is_empty(), "no runtime state under {root:?}");
    crio_test::containers::remove_pod(&mut client, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_log_filter() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let first = drop_in("debug", &images.pause.reference);
    let world = PodWorld::start_with_registry_files(&registry, "", &[(DROP_IN, &first)]).unwrap();
    let mut client = world.daemon.client().await.unwrap();

    // Only lines naming Version (or the reload) are logged from now on.
    let filtered = first.replace(
        "log_level = \"debug\"\n",
        "log_level = \"debug\"\nlog_filter = \"Version|SIGHUP\"\n",
    );
    std::fs::write(world.daemon.path(DROP_IN), filtered).unwrap();
    hup_and_wait_for(&world.daemon, "SIGHUP: reloaded registries");
    let before = world.daemon.log().len();
    let list = crio_api::cri::ListPodSandboxRequest::default();
    client.runtime.list_pod_sandbox(list).await.unwrap();
    client
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let log = world.daemon.log();
        if log[before..].contains("rpc=Version") {
            break log[before..].to_string();
        }
        assert!(Instant::now() < deadline, "no Version line in {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!after.contains("ListPodSandbox"), "{after}");
    assert!(
        after
            .lines()
            .all(|l| l.contains("Version") || l.contains("SIGHUP")),
        "{after}"
    );
}

/// The next datagram on `socket`, within `timeout`.
fn next_message(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn sd_notify_ready_watchdog_and_stopping() {
    let name = format!("crio-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let mut daemon = TestDaemon::prepare_with_files("", &[], &[]).unwrap();
    daemon.set_env("NOTIFY_SOCKET", &format!("@{name}"));
    daemon.set_env("WATCHDOG_USEC", "200000");
    daemon.spawn().unwrap();

    // READY=1 comes first, and the CRI socket answers when it has come.
    let ready = next_message(&socket, Duration::from_secs(10));
    assert_eq!(ready.as_deref(), Some("READY=1"));
    let mut client = daemon.client().await.unwrap();
    let version = client.runtime.version(VersionRequest::default()).await;
    assert!(version.is_ok(), "{version:?}");

    // Watchdog pings every 100 ms: at least five within two seconds.
    let mut pings = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match next_message(&socket, Duration::from_secs(1)).as_deref() {
            Some("WATCHDOG=1") => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 5, "{pings} pings");

    // A stop says STOPPING=1 (after whatever pings were in flight).
    let status = daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    assert!(status.success(), "{status}");
    let mut stopping = false;
    while let Some(message) = next_message(&socket, Duration::from_millis(500)) {
        stopping |= message == "STOPPING=1";
    }
    assert!(stopping, "no STOPPING=1");
}

/// A container whose RuntimeDefault seccomp profile is the daemon's: runs
/// `mkdir` and exits with its status.
fn mkdir_container(name: &str, image: &str) -> crio_api::cri::ContainerConfig {
    use crio_api::cri::{
        LinuxContainerConfig, LinuxContainerSecurityContext, SecurityProfile,
        security_profile::ProfileType,
    };
    let mut config = crio_test::containers::container(name, image, &["mkdir", "/tmp/d"]);
    config.linux = Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
    });
    config
}

/// The exit code of a new `mkdir` container in `pod`.
async fn mkdir_exit_code(s: &mut crio_test::containers::Setup, pod: &str, name: &str) -> i32 {
    use crio_test::containers::{create, start_container, wait_exited};
    let config = mkdir_container(name, &s.images.busybox.reference);
    let id = create(&mut s.client, pod, config).await.unwrap();
    start_container(&mut s.client, &id).await;
    wait_exited(&mut s.client, &id).await.exit_code
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_seccomp_profile_to_new_containers() {
    use crio_test::containers::{remove_pod, run_pod, setup};
    let mut s = setup().await;
    let pod = run_pod(&mut s.client, pod_config("seccomp", POD, POD)).await;
    assert_eq!(mkdir_exit_code(&mut s, &pod, "before").await, 0);

    let profile = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
    let path = s.world.daemon.path("only-mkdir.json");
    std::fs::write(&path, profile).unwrap();
    let drop_in = format!("[crio.runtime]\nseccomp_profile = \"{}\"\n", path.display());
    std::fs::write(s.world.daemon.path(DROP_IN), drop_in).unwrap();
    hup_and_wait_for(&s.world.daemon, "crio.runtime.seccomp_profile: ");

    assert_ne!(mkdir_exit_code(&mut s, &pod, "after").await, 0);
    remove_pod(&mut s.client, &pod).await;
}
