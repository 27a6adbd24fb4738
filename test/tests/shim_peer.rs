//! The peer test: Debian's containerd runs containers through our shim
//! binary (`ctr run --runtime /path/to/containerd-shim-crio-v2`), so the
//! shim speaks the real shim v2 protocol: create with rootfs mounts, start,
//! wait, exit status, stdio FIFOs, kill and delete.

use std::time::{Duration, Instant};

use crio_test::Registry;
use crio_test::containerd::Containerd;
use crio_test::images::push_standard_images;

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Removes this test's cgroup parent (the containers' cgroups are gone
/// with them) also when the test fails.
struct CgroupParent(String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(controller.path().join(self.0.trim_start_matches('/')));
        }
    }
}

#[test]
fn containerd_runs_containers_through_our_shim() {
    let registry = Registry::start().unwrap();
    let images = push_standard_images(&registry).unwrap();
    let ctrd = Containerd::start_with_env(
        &registry.host(),
        &images.pause.reference,
        "{}",
        &[
            ("CRIO_SHIM_SOCKET_DIR", "{dir}/s"),
            ("CRIO_RUNTIME_ROOT", "{dir}/runc"),
        ],
    )
    .unwrap();
    let parent = CgroupParent(crio_test::pods::test_cgroup_parent());
    let image = images.busybox.reference.as_str();
    let shim = crio_test::bins::bin("containerd-shim-crio-v2");
    let shim = shim.to_str().unwrap();

    let pull = ctrd
        .ctr(&["images", "pull", "--plain-http", image])
        .unwrap();
    assert!(pull.status.success(), "{}", text(&pull));

    // A container that writes to both streams and exits 3.
    let cgroup = format!("{}/peer1", parent.0);
    let run = ctrd
        .ctr(&[
            "run",
            "--rm",
            "--runtime",
            shim,
            "--cgroup",
            &cgroup,
            image,
            "peer1",
            "sh",
            "-c",
            "echo hello from ctr; echo to stderr >&2; exit 3",
        ])
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", text(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello from ctr\n");
    assert_eq!(String::from_utf8_lossy(&run.stderr), "to stderr\n");

    // A detached one, killed and deleted through ctr.
    let cgroup = format!("{}/peer2", parent.0);
    let run = ctrd
        .ctr(&[
            "run",
            "-d",
            "--runtime",
            shim,
            "--cgroup",
            &cgroup,
            image,
            "peer2",
            "sleep",
            "1000",
        ])
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let tasks = ctrd.ctr(&["task", "ls"]).unwrap();
    let listing = String::from_utf8_lossy(&tasks.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("peer2") && l.contains("RUNNING")),
        "{listing}"
    );
    let ps = ctrd.ctr(&["task", "ps", "peer2"]).unwrap();
    assert!(ps.status.success(), "{}", text(&ps));
    let kill = ctrd
        .ctr(&["task", "kill", "-s", "SIGKILL", "peer2"])
        .unwrap();
    assert!(kill.status.success(), "{}", text(&kill));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = ctrd.ctr(&["task", "ls"]).unwrap();
        let listing = String::from_utf8_lossy(&tasks.stdout).into_owned();
        if listing
            .lines()
            .any(|l| l.starts_with("peer2") && l.contains("STOPPED"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "peer2 never stopped: {listing}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let delete = ctrd.ctr(&["task", "delete", "peer2"]).unwrap();
    assert!(delete.status.success(), "{}", text(&delete));
    let delete = ctrd.ctr(&["container", "delete", "peer2"]).unwrap();
    assert!(delete.status.success(), "{}", text(&delete));
    let tasks = ctrd.ctr(&["task", "ls"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&tasks.stdout).contains("peer"),
        "{}",
        text(&tasks)
    );
    // Nothing of ours is left mounted under containerd's state.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let state = ctrd.path("state").display().to_string();
    assert!(!mounts.contains(&state), "a rootfs stayed mounted");
}
