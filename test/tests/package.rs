//! The Debian package (issue 20): lintian finds no error in it; it installs
//! into a fresh Debian 12 root with its files where it says and its
//! programs and manual pages working, and purges from it (the storage only
//! when asked); on this host, an upgrade while a container runs restarts
//! the daemon only, the new daemon adopts the container, and a purge leaves
//! no file and no process of the package.

use std::path::{Path, PathBuf};
use std::process::Command;

use crio_api::cri::{ContainerState, NamespaceMode};
use crio_test::containers::{
    container, create, list_containers, remove_pod, run_pod, setup, start_container,
};
use crio_test::package::{
    DebianRoot, HostInstall, PACKAGE, apt_get, deb, files_of, host_crio_lock, package_processes,
    run,
};
use crio_test::pods::pod_config;
use nix::sys::signal::Signal;

const V1: &str = "0.1.0-1";
const V2: &str = "0.1.0-2";
const POD: i32 = NamespaceMode::Pod as i32;
const MAN_PAGES: [&str; 3] = [
    "/usr/share/man/man8/crio.8.gz",
    "/usr/share/man/man5/crio.conf.5.gz",
    "/usr/share/man/man1/crioctl.1.gz",
];

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `path` inside `root` (`/` for the host).
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// None of `files`, nor the configuration the scripts made, is left in `root`.
fn assert_purged(root: &Path, files: &[PathBuf]) {
    for f in files {
        let p = inside(root, f);
        assert!(
            p.symlink_metadata().is_err(),
            "left after purge: {}",
            p.display()
        );
    }
    for left in [
        "etc/crio",
        "var/lib/crio-rs",
        "etc/systemd/system/multi-user.target.wants/crio.service",
        "var/lib/systemd/deb-systemd-helper-enabled/crio.service.dsh-also",
    ] {
        assert!(!root.join(left).exists(), "left after purge: {left}");
    }
}

#[test]
fn lintian_finds_no_error() {
    let deb = deb(V1).unwrap();
    let out = Command::new("lintian").arg(&deb).output().unwrap();
    let report = text(&out);
    assert!(out.status.success(), "lintian failed: {report}");
    let errors: Vec<_> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors: {errors:#?}");
}

/// A process of the host whose executable reads `/usr/bin/crio` (a copy of
/// sleep over a private bind mount of /usr/bin), without installing
/// anything on the host; killed when dropped.
struct HostCrio {
    child: std::process::Child,
    /// The directory the stand-in runs from, kept while it runs.
    _dir: tempfile::TempDir,
}

impl HostCrio {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy("/usr/bin/sleep", dir.path().join("crio")).unwrap();
        let script = format!(
            "mount --bind {} /usr/bin && exec /usr/bin/crio 600",
            dir.path().display()
        );
        let child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while exe(pid) != "/usr/bin/crio" {
            assert!(
                std::time::Instant::now() < deadline,
                "no /usr/bin/crio decoy"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Self { child, _dir: dir }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|s| s.is_none())
    }
}

impl Drop for HostCrio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn installs_runs_and_purges_in_a_fresh_debian_12_root() {
    let deb = deb(V1).unwrap();
    let files = files_of(&deb).unwrap();
    let root = DebianRoot::create().unwrap();
    let r = root.path();
    std::fs::copy(&deb, r.join("tmp/crio-rs.deb")).unwrap();
    run(&mut root.chroot(&["apt-get", "update", "-q"])).unwrap();
    let install = |extra: &[&str]| {
        let mut args = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
        args.extend_from_slice(&["/tmp/crio-rs.deb"]);
        args.extend_from_slice(extra);
        text(&run(&mut root.chroot(&args)).unwrap())
    };
    let printed = install(&["man-db"]);
    assert!(printed.contains("setsid /usr/bin/crio"), "{printed}");

    for f in &files {
        assert!(inside(r, f).is_file(), "missing: {}", f.display());
    }
    for f in [
        "usr/bin/crio",
        "usr/bin/crioctl",
        "usr/libexec/crio/containerd-shim-crio-v2",
        "usr/lib/systemd/system/crio.service",
        "usr/share/bash-completion/completions/crioctl",
        "usr/share/zsh/vendor-completions/_crio",
        "usr/share/fish/vendor_completions.d/crio.fish",
        "etc/crio/crio.conf",
        "etc/cni/net.d/10-crio-bridge.conflist",
    ] {
        assert!(r.join(f).is_file(), "missing: {f}");
    }
    assert!(r.join("etc/crio/crio.conf.d").is_dir());

    let version = text(&run(&mut root.chroot(&["crio", "--version"])).unwrap());
    assert!(version.contains("0.1.0"), "{version}");
    // The shipped crio.conf (commented defaults) loads: crio config prints
    // the defaults from it.
    let config = text(&run(&mut root.chroot(&["crio", "config"])).unwrap());
    assert!(
        config.contains("listen = \"/run/crio/crio.sock\""),
        "{config}"
    );
    run(&mut root.chroot(&["crioctl", "--version"])).unwrap();
    for page in MAN_PAGES {
        let mut man = root.chroot(&["man", "--warnings", "-l", page]);
        let out = run(man.env("MANWIDTH", "80")).unwrap();
        let (shown, warnings) = (String::from_utf8_lossy(&out.stdout), &out.stderr);
        assert!(shown.contains("NAME"), "{page}: {shown}");
        assert!(
            warnings.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(warnings)
        );
    }

    // A purge keeps the storage unless asked, and stops no daemon of the
    // host: a host process whose executable reads as /usr/bin/crio (through
    // the host's /proc, mounted in the root) survives it.
    {
        let _turn = host_crio_lock().unwrap();
        let mut host_crio = HostCrio::start();
        std::fs::create_dir_all(r.join("var/lib/crio/images")).unwrap();
        run(&mut root.chroot(&["apt-get", "purge", "-y", "-q", PACKAGE])).unwrap();
        assert!(
            host_crio.alive(),
            "the purge in the chroot stopped the host's crio"
        );
    }
    assert_purged(r, &files);
    assert!(!r.join("etc/cni/net.d/10-crio-bridge.conflist").exists());
    assert!(
        r.join("var/lib/crio/images").is_dir(),
        "storage removed unasked"
    );
    install(&[]);
    let mut purge = root.chroot(&["apt-get", "purge", "-y", "-q", PACKAGE]);
    run(purge.env("CRIO_RS_PURGE_STORAGE", "yes")).unwrap();
    assert_purged(r, &files);
    assert!(
        !r.join("var/lib/crio").exists(),
        "storage kept though asked"
    );
}

fn installed_version() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version} ${db:Status-Status}", PACKAGE])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    installed_version().ends_with(" installed")
}

fn exe(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_restarts_the_daemon_only_and_a_purge_leaves_nothing() {
    let (v1, v2) = (deb(V1).unwrap(), deb(V2).unwrap());
    // Dropped last: after the host install's own clean-up.
    let _turn = host_crio_lock().unwrap();
    let files = files_of(&v2).unwrap();
    assert!(
        !installed(),
        "{PACKAGE} is installed on this host: this test would purge it"
    );
    let cni_example = Path::new("/etc/cni/net.d/10-crio-bridge.conflist");
    let had_cni_example = cni_example.exists();
    let host = HostInstall;
    let printed = host.install(&v1).unwrap();
    assert!(printed.contains("setsid /usr/bin/crio"), "{printed}");

    // The package's daemon, started by hand (on this test's own root,
    // runroot, socket and network), runs a pod through the package's shim.
    let mut s = setup().await;
    let daemon = &mut s.world.daemon;
    daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    daemon.set_binary("/usr/bin/crio".into());
    daemon.spawn().unwrap();
    assert_eq!(exe(daemon.pid().unwrap()), "/usr/bin/crio");
    let mut client = daemon.client().await.unwrap();
    let pod_id = run_pod(&mut client, pod_config("package", POD, POD)).await;
    let sleeper = container("sleeper", &s.images.busybox.reference, &["sleep", "3600"]);
    let id = create(&mut client, &pod_id, sleeper).await.unwrap();
    start_container(&mut client, id.clone()).await;
    let shims = crio_test::daemon::shims_of(&daemon.path(""));
    assert_eq!(shims.len(), 1, "one shim for the pod");
    assert_eq!(
        exe(shims[0] as u32),
        "/usr/libexec/crio/containerd-shim-crio-v2"
    );

    // The upgrade: the postinst says to restart the daemon by hand (no
    // systemd here); the shim and its container run on.
    let printed = host.install(&v2).unwrap();
    assert!(
        printed.contains(&format!("upgraded from {V1}")),
        "{printed}"
    );
    assert_eq!(installed_version(), format!("{V2} installed"));
    daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    daemon.spawn().unwrap();
    assert_eq!(
        exe(daemon.pid().unwrap()),
        "/usr/bin/crio",
        "not the new file"
    );
    let mut client = daemon.client().await.unwrap();
    let listed = list_containers(&mut client).await;
    let c = listed
        .iter()
        .find(|c| c.id == id)
        .expect("container listed");
    assert_eq!(c.state, ContainerState::ContainerRunning as i32);
    assert_eq!(crio_test::daemon::shims_of(&daemon.path("")), shims);
    let (code, out, _) = crio_test::containers::exec_sh(&mut client, &id, "echo adopted").await;
    assert_eq!((code, out.as_str()), (0, "adopted"));

    // Drained and stopped, then purged: nothing of the package is left.
    remove_pod(&mut client, &pod_id).await;
    daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    run(&mut apt_get(&["purge", PACKAGE])).unwrap();
    assert!(!installed(), "{}", installed_version());
    assert_purged(Path::new("/"), &files);
    assert_eq!(cni_example.exists(), had_cni_example);
    assert_eq!(package_processes(), Vec::<i32>::new());
}
