//! Pod sandboxes over the CRI with the real bridge, host-local and portmap
//! plugins: namespaces, network, pod files, stop and remove leaving
//! nothing, idempotence, name reservation, broken networks.

use std::path::{Path, PathBuf};
use std::process::Command;

use crio_api::client::CriClient;
use crio_api::cri::{
    DnsConfig, ListPodSandboxRequest, NamespaceMode, PodSandboxConfig, PodSandboxFilter,
    PodSandboxState, PodSandboxStateValue, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StopPodSandboxRequest,
};
use crio_test::pods::{PodWorld, pod_config};
use tonic::Code;

const POD: i32 = NamespaceMode::Pod as i32;
const NODE: i32 = NamespaceMode::Node as i32;

async fn runp(client: &mut CriClient, config: &PodSandboxConfig) -> Result<String, tonic::Status> {
    client
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

async fn status(
    client: &mut CriClient,
    id: &str,
) -> Result<(crio_api::cri::PodSandboxStatus, serde_json::Value), tonic::Status> {
    let r = client
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    Ok((
        r.status.unwrap(),
        serde_json::from_str(&r.info["info"]).unwrap(),
    ))
}

async fn stop(client: &mut CriClient, id: &str) {
    client
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
}

async fn remove(client: &mut CriClient, id: &str) {
    client
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

fn in_pod(netns: &Path, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(args)
        .output()
        .unwrap()
}

fn netns(world: &PodWorld, id: &str) -> PathBuf {
    world.daemon.path("ns/netns").join(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_get_network_files_and_leave_nothing_behind() {
    let world = PodWorld::start().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let mut one = pod_config("one", POD, POD);
    one.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    one.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
    one.labels.insert("app".into(), "web".into());
    let a = runp(&mut client, &one).await.unwrap();
    let b = runp(&mut client, &pod_config("two", POD, POD))
        .await
        .unwrap();

    let (sa, info) = status(&mut client, &a).await.unwrap();
    assert_eq!(sa.state, PodSandboxState::SandboxReady as i32);
    let ip_a = sa.network.unwrap().ip;
    let ip_b = status(&mut client, &b).await.unwrap().0.network.unwrap().ip;
    assert!(ip_a.starts_with(&format!("{}.", world.prefix)), "{ip_a}");

    // Pod files.
    let run_dir = PathBuf::from(info["runDir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(run_dir.join("hostname")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(run_dir.join("resolv.conf")).unwrap(),
        "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert!(
        std::fs::read_to_string(run_dir.join("hosts"))
            .unwrap()
            .contains(&format!("{ip_a}\tone"))
    );
    assert!(
        mounts_under(&run_dir).iter().any(|m| m.ends_with("/shm")),
        "no /dev/shm mount"
    );

    // Network: the pods reach each other, the host reaches a pod.
    let out = in_pod(
        &netns(&world, &a),
        &["busybox", "ping", "-c", "1", "-W", "5", &ip_b],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "5", &ip_a])
        .output()
        .unwrap();
    assert!(out.status.success(), "host cannot reach the pod");
    let out = in_pod(
        &netns(&world, &a),
        &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");

    // Filters.
    let lister = client.clone();
    let list = |filter: PodSandboxFilter| {
        let mut c = lister.clone();
        async move {
            c.runtime
                .list_pod_sandbox(ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .items
        }
    };
    assert_eq!(list(PodSandboxFilter::default()).await.len(), 2);
    let mut by_label = PodSandboxFilter::default();
    by_label.label_selector.insert("app".into(), "web".into());
    assert_eq!(list(by_label).await[0].id, a);
    assert_eq!(
        list(PodSandboxFilter {
            id: a[..8].into(),
            ..Default::default()
        })
        .await
        .len(),
        1
    );

    // Stop twice, remove twice; then nothing of the pods remains.
    for id in [&a, &b] {
        stop(&mut client, id).await;
        stop(&mut client, id).await;
    }
    let not_ready = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: PodSandboxState::SandboxNotready as i32,
        }),
        ..Default::default()
    };
    assert_eq!(list(not_ready).await.len(), 2);
    assert!(
        world.leases().is_empty(),
        "IPs still allocated: {:?}",
        world.leases()
    );
    for id in [&a, &b] {
        remove(&mut client, id).await;
        remove(&mut client, id).await;
    }
    assert!(list(PodSandboxFilter::default()).await.is_empty());
    assert!(
        mounts_under(&world.daemon.path("")).is_empty(),
        "{:?}",
        mounts_under(&world.daemon.path(""))
    );
    assert_eq!(
        std::fs::read_dir(world.daemon.path("ns/netns"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(world.daemon.path("run/pods"))
            .unwrap()
            .count(),
        0
    );
    let links = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link", "show", "master", &world.bridge])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(links.trim().is_empty(), "veths left on the bridge: {links}");
    let err = status(&mut client, &a).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_pod_sees_the_host() {
    let world = PodWorld::start().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let id = runp(&mut client, &pod_config("hostnet", NODE, NODE))
        .await
        .unwrap();
    let (s, info) = status(&mut client, &id).await.unwrap();
    assert!(s.network.is_none());
    assert!(
        !netns(&world, &id).exists(),
        "a host-network pod must not get a netns"
    );
    let run_dir = PathBuf::from(info["runDir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(run_dir.join("hosts")).unwrap(),
        std::fs::read_to_string("/etc/hosts").unwrap()
    );
    assert!(
        mounts_under(&run_dir).is_empty(),
        "host IPC pods use the host's /dev/shm"
    );
    remove(&mut client, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_get_the_same_pod_and_a_clash_is_refused() {
    let world = PodWorld::start().unwrap();
    let client = world.daemon.client().await.unwrap();
    let config = pod_config("retry", POD, POD);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut c = client.clone();
            let config = config.clone();
            tokio::spawn(async move { runp(&mut c, &config).await })
        })
        .collect();
    let mut ids = Vec::new();
    for c in calls {
        ids.push(c.await.unwrap().unwrap());
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    let mut c = client.clone();
    assert_eq!(runp(&mut c, &config).await.unwrap(), ids[0]);
    let mut clash = config.clone();
    clash.hostname = "other".into();
    let err = runp(&mut c, &clash).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains(&ids[0]) && err.message().contains("k8s_retry_default"),
        "{}",
        err.message()
    );
    remove(&mut c, &ids[0]).await;
    // Once removed, the name is free again.
    let again = runp(&mut c, &clash).await.unwrap();
    assert_ne!(again, ids[0]);
    remove(&mut c, &again).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_network_fails_naming_it_and_leaves_no_half_pod() {
    let world = PodWorld::start().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let conf = world.daemon.cni_dir().join("10-crio-test.conflist");
    let good = std::fs::read_to_string(&conf).unwrap();
    // A plugin that fails after the bridge plugin has done its part: the
    // bridge's work is undone.
    let failing = good.replace(
        r#"{"portMappings":true}}"#,
        r#"{"portMappings":true}},{"type":"host-device","device":"nosuchdev0"}"#,
    );
    assert_ne!(failing, good);
    std::fs::write(&conf, failing).unwrap();
    let err = runp(&mut client, &pod_config("broken", POD, POD))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("10-crio-test.conflist") && err.message().contains("host-device"),
        "{}",
        err.message()
    );
    assert!(
        world.leases().is_empty(),
        "IPs still allocated: {:?}",
        world.leases()
    );
    // A file that is not a network at all.
    std::fs::write(&conf, "{ not json").unwrap();
    let err = runp(&mut client, &pod_config("broken", POD, POD))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("10-crio-test.conflist"),
        "{}",
        err.message()
    );

    let pods = client
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty());
    assert_eq!(
        std::fs::read_dir(world.daemon.path("ns/netns"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    assert!(mounts_under(&world.daemon.path("")).is_empty());
    // The shim started alongside the failed network was shut down.
    assert!(crio_test::daemon::shims_of(&world.daemon.path("")).is_empty());
    assert_eq!(
        std::fs::read_dir(world.daemon.path("run/pods"))
            .unwrap()
            .count(),
        0
    );

    std::fs::write(&conf, good).unwrap();
    let id = runp(&mut client, &pod_config("broken", POD, POD))
        .await
        .unwrap();
    remove(&mut client, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crioctl_pod_verbs() {
    let world = PodWorld::start().unwrap();
    let d = &world.daemon;
    let file = d.path("pod.yaml");
    std::fs::write(&file, "metadata:\n  name: cli\n  namespace: default\n  uid: cli-uid\nhostname: cli\nlabels:\n  tier: front\nlinux:\n  security_context:\n    namespace_options:\n      pid: 1\n").unwrap();
    let run = |args: &[&str]| {
        let out = d.crioctl(args).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let id = run(&["runp", file.to_str().unwrap()]).trim().to_string();
    assert_eq!(id.len(), 64);
    let table = run(&["pods"]);
    assert!(
        table.contains("POD ID")
            && table.contains(&id[..13])
            && table.contains("Ready")
            && table.contains("cli"),
        "{table}"
    );
    assert_eq!(run(&["pods", "-q", "--label", "tier=front"]).trim(), id);
    assert_eq!(run(&["pods", "-q", "--label", "tier=back"]).trim(), "");
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspectp", &id])).unwrap();
    assert_eq!(inspect["status"]["metadata"]["name"], "cli");
    assert!(
        inspect["status"]["network"]["ip"]
            .as_str()
            .unwrap()
            .starts_with(&world.prefix)
    );
    let out = d.crioctl(&["rmp", &id]).unwrap();
    assert!(
        !out.status.success(),
        "rmp of a ready pod without -f must refuse"
    );
    run(&["stopp", &id]);
    assert!(run(&["pods", "--state", "notready", "-q"]).contains(&id));
    run(&["rmp", "--all"]);
    assert_eq!(run(&["pods", "-q"]).trim(), "");
}

/// Kills a process on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first global IPv4 address of the host that is not a CNI bridge's.
fn node_ip(bridge: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains(bridge) && !l.contains("cni") && !l.contains("crio"))
        .find_map(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|a| a.split('/').next())
                .map(str::to_string)
        })
}

fn http_get(addr: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", &format!("http://{addr}/index.html")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GET {addr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn host_port_reaches_the_pod_on_the_node_ip_and_localhost() {
    let world = PodWorld::start().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let host_port = 20_000 + (std::process::id() % 20_000) as i32;
    let mut config = pod_config("web", POD, POD);
    config.port_mappings.push(crio_api::cri::PortMapping {
        protocol: crio_api::cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    });
    let id = runp(&mut client, &config).await.unwrap();
    let www = world.daemon.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the pod\n").unwrap();
    let _server = Running(
        Command::new("nsenter")
            .arg(format!("--net={}", netns(&world, &id).display()))
            .args(["busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(&www)
            .spawn()
            .unwrap(),
    );
    let ip = status(&mut client, &id)
        .await
        .unwrap()
        .0
        .network
        .unwrap()
        .ip;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let up = || {
        Command::new("curl")
            .args([
                "-sf",
                "-m",
                "1",
                "-o",
                "/dev/null",
                &format!("http://{ip}:8080/index.html"),
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    while !up() {
        assert!(
            std::time::Instant::now() < deadline,
            "server in the pod did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let node = node_ip(&world.bridge).expect("a global IPv4 address on the host");
    assert_eq!(
        http_get(&format!("{node}:{host_port}")),
        "hello from the pod\n"
    );
    assert_eq!(
        http_get(&format!("127.0.0.1:{host_port}")),
        "hello from the pod\n"
    );
    remove(&mut client, &id).await;
    let rules = String::from_utf8(
        Command::new("iptables")
            .args(["-t", "nat", "-S"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !rules.contains(&format!("--dport {host_port}")),
        "hostport rules left: {rules}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_runtime_config_hands_the_pod_cidr_to_ipam() {
    use crio_api::cri::{NetworkConfig, RuntimeConfig, UpdateRuntimeConfigRequest};
    let world = PodWorld::start().unwrap();
    let conf = world.daemon.cni_dir().join("10-crio-test.conflist");
    let text = std::fs::read_to_string(&conf).unwrap();
    // The range comes from the runtime only.
    let text = text
        .replace(
            r#""hairpinMode":true,"#,
            r#""hairpinMode":true,"capabilities":{"ipRanges":true},"#,
        )
        .replace(
            &format!(r#""ranges":[[{{"subnet":"{}.0/24"}}]],"#, world.prefix),
            "",
        );
    assert!(!text.contains("\"ranges\""), "{text}");
    std::fs::write(&conf, text).unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let update = |cidr: &str| UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    let err = client
        .runtime
        .update_runtime_config(update("10.1.2.3"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    client
        .runtime
        .update_runtime_config(update(&format!("{}.128/25", world.prefix)))
        .await
        .unwrap();
    let id = runp(&mut client, &pod_config("cidr", POD, POD))
        .await
        .unwrap();
    let ip = status(&mut client, &id)
        .await
        .unwrap()
        .0
        .network
        .unwrap()
        .ip;
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with(&world.prefix) && last > 128,
        "{ip} not in the pod CIDR"
    );
    remove(&mut client, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_stack_pods_get_both_addresses_their_bandwidth_and_network_stats() {
    use crio_api::cri::PodSandboxStatsRequest;
    let world = PodWorld::start_dual_stack().unwrap();
    let mut client = world.daemon.client().await.unwrap();
    let mut shaped = pod_config("shaped", POD, POD);
    shaped
        .annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
    let a = runp(&mut client, &shaped).await.unwrap();
    let b = runp(&mut client, &pod_config("plain", POD, POD))
        .await
        .unwrap();

    // Both families, IPv4 first; both in /etc/hosts.
    let v6 = crio_test::pods::v6_prefix();
    let (sa, info) = status(&mut client, &a).await.unwrap();
    let net = sa.network.unwrap();
    assert!(net.ip.starts_with(&format!("{}.", world.prefix)), "{net:?}");
    assert_eq!(net.additional_ips.len(), 1, "{net:?}");
    let v6_a = net.additional_ips[0].ip.clone();
    assert!(v6_a.starts_with(&v6), "{v6_a} not in {v6}/64");
    let hosts =
        std::fs::read_to_string(Path::new(info["runDir"].as_str().unwrap()).join("hosts")).unwrap();
    assert!(hosts.contains(&format!("{v6_a}\tshaped")), "{hosts}");
    let v6_b = status(&mut client, &b)
        .await
        .unwrap()
        .0
        .network
        .unwrap()
        .additional_ips[0]
        .ip
        .clone();
    let out = in_pod(
        &netns(&world, &a),
        &["busybox", "ping", "-6", "-c", "1", "-W", "5", &v6_b],
    );
    assert!(
        out.status.success(),
        "no IPv6 between pods: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The ingress limit shapes the host side of the shaped pod's link only.
    let host_side = |info: &serde_json::Value| -> String {
        info["cniResult"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["sandbox"].as_str().is_none_or(str::is_empty))
            .filter_map(|i| i["name"].as_str())
            .find(|n| *n != world.bridge)
            .unwrap()
            .to_string()
    };
    let qdisc = |dev: &str| {
        let out = Command::new("tc")
            .args(["qdisc", "show", "dev", dev])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shaped_qdisc = qdisc(&host_side(&info));
    assert!(
        shaped_qdisc.contains("tbf") && shaped_qdisc.contains("rate 1Mbit"),
        "{shaped_qdisc}"
    );
    let (_, info_b) = status(&mut client, &b).await.unwrap();
    assert!(!qdisc(&host_side(&info_b)).contains("tbf"));

    // Network counters of the pod, from its side: the ping went out and back.
    let stats = client
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: a.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let usage = stats.linux.unwrap().network.unwrap();
    let eth0 = usage.default_interface.unwrap();
    assert_eq!(eth0.name, "eth0");
    let bytes = |v: Option<crio_api::cri::UInt64Value>| v.map(|v| v.value).unwrap_or(0);
    assert!(
        bytes(eth0.tx_bytes) >= 56 && bytes(eth0.rx_bytes) >= 56,
        "{eth0:?}"
    );

    for id in [&a, &b] {
        stop(&mut client, id).await;
        remove(&mut client, id).await;
    }
    let leases: Vec<_> = std::fs::read_dir(world.daemon.path("ipam/crio-test"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains('.') || n.contains(':'))
                .filter(|n| !n.starts_with("last_reserved_ip"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leases.is_empty(), "{leases:?}");
}
