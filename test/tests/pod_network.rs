//! Pod namespaces and CNI with the real plugins: namespaces pinned as the
//! daemon pins them, the bridge, host-local, portmap and loopback plugins
//! adding two pods that reach each other, and DEL leaving nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use crio_network::cni::{self, Attachment};
use crio_network::load_network;
use crio_network::netns::{Kind, PinRequest, pin, pin_path, unpin};

const KINDS: [Kind; 3] = [Kind::Net, Kind::Ipc, Kind::Uts];

fn request(
    dir: &Path,
    id: &str,
    kinds: &[Kind],
    hostname: Option<&str>,
    sysctls: &[&str],
) -> PinRequest {
    PinRequest {
        kinds: kinds.to_vec(),
        namespaces_dir: dir.to_path_buf(),
        id: id.into(),
        hostname: hostname.map(Into::into),
        sysctls: sysctls
            .iter()
            .filter_map(|s| s.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        user: None,
    }
}

/// Pinned namespaces of one pod, unpinned on drop.
struct Pinned {
    dir: PathBuf,
    id: String,
}

impl Pinned {
    fn new(dir: &Path, id: &str, hostname: &str, sysctls: &[&str]) -> Self {
        pin(&request(dir, id, &KINDS, Some(hostname), sysctls)).unwrap();
        Self {
            dir: dir.to_path_buf(),
            id: id.to_string(),
        }
    }

    fn path(&self, kind: Kind) -> PathBuf {
        pin_path(&self.dir, kind, &self.id)
    }

    /// Runs a command inside the pod's namespaces.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path(Kind::Net).display()))
            .arg(format!("--ipc={}", self.path(Kind::Ipc).display()))
            .arg(format!("--uts={}", self.path(Kind::Uts).display()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(e) = unpin(&self.dir, &self.id, &KINDS) {
            eprintln!("unpin: {e}");
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

#[test]
fn namespaces_are_pinned_with_hostname_and_sysctls() {
    let tmp = tempfile::tempdir().unwrap();
    let pod = Pinned::new(
        tmp.path(),
        "pod-a",
        "pod-a-host",
        &[
            "net.ipv4.ip_unprivileged_port_start=80",
            "kernel.shm_rmid_forced=1",
        ],
    );
    for kind in KINDS {
        assert!(is_mounted(&pod.path(kind)), "{kind:?} not pinned");
    }
    assert_eq!(pod.run(&["hostname"]).trim(), "pod-a-host");
    assert_eq!(
        pod.run(&["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"])
            .trim(),
        "80"
    );
    assert_eq!(
        pod.run(&["cat", "/proc/sys/kernel/shm_rmid_forced"]).trim(),
        "1"
    );
    assert!(pod.run(&["ip", "-o", "link", "show", "lo"]).contains("UP"));
    // The host is untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "pod-a-host"
    );
    let paths: Vec<_> = KINDS.iter().map(|k| pod.path(*k)).collect();
    drop(pod);
    for p in paths {
        assert!(
            !p.exists() && !is_mounted(&p),
            "{} left behind",
            p.display()
        );
    }
}

#[test]
fn a_bad_sysctl_fails_and_pins_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let err = pin(&request(
        tmp.path(),
        "bad",
        &[Kind::Net],
        None,
        &["net.no.such.key=1"],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("net.no.such.key"), "{err}");
    assert!(!pin_path(tmp.path(), Kind::Net, "bad").exists());
}

/// Pins taken on threads of this test process leave the other threads'
/// namespaces alone.
#[test]
fn pinning_leaves_the_callers_namespaces_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let own = |k: &str| std::fs::read_link(format!("/proc/thread-self/ns/{k}")).unwrap();
    let before: Vec<_> = ["net", "ipc", "uts"].map(own).into();
    let pod = Pinned::new(tmp.path(), "pod-c", "pod-c-host", &[]);
    let after: Vec<_> = ["net", "ipc", "uts"].map(own).into();
    assert_eq!(before, after);
    // The pinned ones are new.
    let pinned = std::fs::metadata(pod.path(Kind::Net)).unwrap();
    let host = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(pinned.ino(), host.ino());
}

/// A bridge network whose bridge, subnet and IPAM store are the test's own.
fn network(dir: &Path, bridge: &str, subnet: &str) -> PathBuf {
    let net = dir.join("net.d");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::write(
        net.join("10-test.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"test","plugins":[
              {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,
                "ipam":{{"type":"host-local","dataDir":"{data}","ranges":[[{{"subnet":"{subnet}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},
              {{"type":"portmap","capabilities":{{"portMappings":true}}}},
              {{"type":"loopback"}}]}}"#,
            data = dir.join("ipam").display()
        ),
    )
    .unwrap();
    net
}

/// Deletes the test's bridge on drop.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_on_the_bridge_reach_each_other_and_del_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let bridge = Bridge(format!("cnit{}", std::process::id() % 100_000));
    let net_dir = network(tmp.path(), &bridge.0, "10.231.0.0/24");
    let plugin_dirs = vec![PathBuf::from("/usr/lib/cni")];
    let conf = load_network(&net_dir, "", &plugin_dirs).unwrap();
    let plugins = cni::Plugins {
        dirs: &plugin_dirs,
        timeout: std::time::Duration::from_secs(60),
    };
    let pods = [
        Pinned::new(tmp.path(), "pod-1", "one", &[]),
        Pinned::new(tmp.path(), "pod-2", "two", &[]),
    ];
    let attachment = |p: &Pinned| Attachment {
        container_id: p.id.clone(),
        netns: p.path(Kind::Net),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAME".into(), p.id.clone()),
            ("K8S_POD_NAMESPACE".into(), "default".into()),
        ],
        ..Attachment::default()
    };
    let mut results = Vec::new();
    for p in &pods {
        results.push(cni::add(&conf, &attachment(p), &plugins).await.unwrap());
    }
    let ips: Vec<String> = results
        .iter()
        .map(|r| cni::result_ips(r)[0].clone())
        .collect();
    assert!(ips.iter().all(|ip| ip.starts_with("10.231.0.")), "{ips:?}");
    assert_ne!(ips[0], ips[1]);
    assert!(
        pods[0]
            .run(&["ip", "-o", "addr", "show", "eth0"])
            .contains(&ips[0])
    );
    pods[0].run(&["busybox", "ping", "-c", "1", "-W", "5", &ips[1]]);
    // The pod reaches the host through the bridge's gateway address.
    pods[1].run(&["busybox", "ping", "-c", "1", "-W", "5", "10.231.0.1"]);
    for (p, r) in pods.iter().zip(&results) {
        cni::check(&conf, &attachment(p), r, &plugins)
            .await
            .unwrap();
    }

    for (p, r) in pods.iter().zip(&results) {
        cni::del(&conf, &attachment(p), Some(r), &plugins)
            .await
            .unwrap();
        // A second DEL of what is gone succeeds.
        cni::del(&conf, &attachment(p), Some(r), &plugins)
            .await
            .unwrap();
    }
    assert!(!pods[0].run(&["ip", "-o", "link"]).contains("eth0"));
    let leases: Vec<_> = std::fs::read_dir(tmp.path().join("ipam/test"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(leases.is_empty(), "IP allocations left: {leases:?}");
}
