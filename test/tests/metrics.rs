//! Metrics end to end: the Prometheus endpoint of `[crio.metrics]`
//! scraped after a pod's life, a failed pull and an OOM kill (and read by
//! Debian's promtool), `metrics_collectors` restricting it, HTTPS with
//! `metrics_cert`/`metrics_key`; and the kubelet's CRI metrics
//! (ListMetricDescriptors, ListPodSandboxMetrics) following a container
//! that allocates memory and burns CPU.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crio_api::cri::{
    ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, NamespaceMode, PodSandboxMetrics,
};
use crio_test::containers::{
    Setup, container, create, memory_hog, remove_pod, run_pod, setup_with_files, start_container,
    wait_exited,
};
use crio_test::pods::pod_config;

const POD: i32 = NamespaceMode::Pod as i32;

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A drop-in enabling metrics on `port` with `more` keys of `[crio.metrics]`.
fn metrics_conf(port: u16, more: &str) -> String {
    format!("[crio.metrics]\nenable_metrics = true\nmetrics_port = {port}\n{more}\n")
}

/// What `curl` gets with `args`; fails the test unless it succeeds.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn scrape(port: u16) -> String {
    curl(&[&format!("http://127.0.0.1:{port}/metrics")])
}

/// The value of the sample `series` (name and labels as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// promtool's verdict: its exit code and complaints.
fn promtool(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

/// The three families whose CRI-O names break Prometheus' naming rules
/// (kept for CRI-O's dashboards); promtool names exactly these.
const CRI_O_NAMES_PROMTOOL_LINTS: [&str; 3] = [
    "container_runtime_crio_operations_latency_seconds_total non-counter metrics should not have \"_total\" suffix",
    "container_runtime_crio_resources_stalled_at_stage counter metrics should have \"_total\" suffix",
    "container_runtime_crio_containers_stopped_monitor_count counter metrics should have \"_total\" suffix",
];

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_with_a_pod_a_failed_pull_and_an_oom_kill() {
    let port = free_port();
    let conf = metrics_conf(port, "metrics_socket = \"{dir}/metrics.sock\"");
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup_with_files(&[("conf.d/50-metrics.conf", &conf)]).await;
    // The pull of busybox in the set-up is counted.
    let before = scrape(port);
    assert_eq!(
        value(&before, "container_runtime_crio_image_pulls_success_total"),
        Some(1.0),
        "{before}"
    );
    assert!(
        value(
            &before,
            "container_runtime_crio_image_pulls_layer_size_count"
        ) >= Some(1.0),
        "{before}"
    );
    assert!(
        before.contains("container_runtime_crio_image_pulls_bytes_total{mediatype="),
        "{before}"
    );
    assert_eq!(
        value(&before, "container_runtime_crio_containers_oom_total"),
        Some(0.0),
        "{before}"
    );

    let missing = format!(
        "{}/crio-test/no-such-image:1",
        images.busybox.reference.split('/').next().unwrap()
    );
    let err = crio_test::cri::pull(&mut client, &missing)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

    let pod_id = run_pod(&mut client, pod_config("hungry", POD, POD)).await;
    let config = memory_hog("hungry", &images.busybox.reference);
    let id = create(&mut client, &pod_id, config).await.unwrap();
    start_container(&mut client, id.clone()).await;
    let s = wait_exited(&mut client, &id).await;
    assert_eq!(s.reason, "OOMKilled");

    let after = scrape(port);
    let ops = |op: &str| {
        value(
            &after,
            &format!("container_runtime_crio_operations_total{{operation=\"{op}\"}}"),
        )
    };
    for op in [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "ContainerStatus",
    ] {
        assert!(ops(op) >= Some(1.0), "{op}: {after}");
    }
    assert_eq!(
        value(
            &after,
            "container_runtime_crio_operations_errors_total{operation=\"PullImage\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert!(
        value(
            &after,
            "container_runtime_crio_operations_latency_seconds_total_count{operation=\"RunPodSandbox\"}"
        ) >= Some(1.0),
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "container_runtime_crio_image_pulls_failure_total{error=\"NOT_FOUND\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        value(&after, "container_runtime_crio_containers_oom_total"),
        Some(1.0),
        "{after}"
    );
    let by_name = "container_runtime_crio_containers_oom_count_total{name=\"k8s_hungry_hungry_default_uid-hungry_0\"}";
    assert_eq!(value(&after, by_name), Some(1.0), "{after}");
    assert_eq!(
        value(
            &after,
            "container_runtime_crio_default_runtime{runtime=\"runc\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert!(
        value(&after, "process_resident_memory_bytes") > Some(1e6),
        "{after}"
    );
    assert!(value(&after, "process_open_fds") > Some(0.0), "{after}");
    assert!(
        value(&after, "container_runtime_crio_processes_defunct").is_some(),
        "{after}"
    );

    // The same exposition on the unix socket.
    let socket = world.daemon.path("metrics.sock");
    let on_socket = curl(&[
        "--unix-socket",
        socket.to_str().unwrap(),
        "http://localhost/metrics",
    ]);
    assert!(on_socket.contains(by_name), "{on_socket}");

    // promtool parses it; its only complaints are about CRI-O's own names
    // (each family is listed once it has a sample).
    let (code, said) = promtool(&after);
    assert_eq!(code, 3, "{said}");
    for complaint in said.lines().filter(|l| !l.is_empty()) {
        assert!(
            CRI_O_NAMES_PROMTOOL_LINTS.contains(&complaint),
            "promtool: {said}"
        );
    }
    assert!(said.contains(CRI_O_NAMES_PROMTOOL_LINTS[0]), "{said}");

    // A removed container's OOM count goes, as in CRI-O; the total stays.
    remove_pod(&mut client, &pod_id).await;
    let removed = scrape(port);
    assert_eq!(value(&removed, by_name), None, "{removed}");
    assert_eq!(
        value(&removed, "container_runtime_crio_containers_oom_total"),
        Some(1.0)
    );
    assert!(
        value(
            &removed,
            "container_runtime_crio_operations_total{operation=\"RemovePodSandbox\"}"
        ) >= Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_collectors_choose_the_families_and_promtool_accepts_them() {
    let port = free_port();
    let conf = metrics_conf(
        port,
        "metrics_collectors = [\"operations_total\", \"crio_image_pulls_success_total\", \"container_runtime_crio_containers_oom_total\"]",
    );
    let Setup {
        world: _world,
        client: _client,
        images: _images,
        _registry,
    } = setup_with_files(&[("conf.d/50-metrics.conf", &conf)]).await;
    let text = scrape(port);
    assert!(
        value(
            &text,
            "container_runtime_crio_operations_total{operation=\"PullImage\"}"
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "container_runtime_crio_image_pulls_success_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "container_runtime_crio_containers_oom_total"),
        Some(0.0),
        "{text}"
    );
    for absent in [
        "container_runtime_crio_image_pulls_bytes_total",
        "container_runtime_crio_operations_errors_total",
        "container_runtime_crio_operations_latency_seconds",
        "container_runtime_crio_processes_defunct",
        "container_runtime_crio_default_runtime",
    ] {
        assert!(!text.contains(absent), "{absent} exposed: {text}");
    }
    // The daemon's process metrics are no CRI-O collector: always there.
    assert!(
        value(&text, "process_start_time_seconds") > Some(1e9),
        "{text}"
    );
    let (code, said) = promtool(&text);
    assert_eq!(code, 0, "promtool: {said}\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_speaks_https_with_metrics_cert_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = free_port();
    let conf = metrics_conf(
        port,
        &format!(
            "metrics_cert = \"{}\"\nmetrics_key = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let _world =
        crio_test::TestDaemon::start_with_files("", &[], &[("conf.d/50-metrics.conf", &conf)])
            .unwrap();
    let url = format!("https://127.0.0.1:{port}/metrics");
    let text = curl(&["--cacert", cert.to_str().unwrap(), &url]);
    assert!(
        value(&text, "process_start_time_seconds") > Some(1e9),
        "{text}"
    );
    // Plain HTTP gets no exposition.
    let plain = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}

/// The metrics of the only pod, by name and last label value (container or
/// interface), of its one container.
fn by_name(pod: &PodSandboxMetrics) -> HashMap<String, u64> {
    pod.container_metrics[0]
        .metrics
        .iter()
        .map(|m| (m.name.clone(), m.value.as_ref().map_or(0, |v| v.value)))
        .collect()
}

async fn pod_metrics(client: &mut crio_api::client::CriClient) -> PodSandboxMetrics {
    let mut all = client
        .runtime
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    assert_eq!(all.len(), 1);
    all.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_sandbox_metrics_follow_a_container_that_allocates_and_burns_cpu() {
    let conf =
        "[crio.stats]\nincluded_pod_metrics = [\"cpu\", \"memory\", \"network\", \"process\"]\n";
    let Setup {
        world: _world,
        mut client,
        images,
        _registry,
    } = setup_with_files(&[("conf.d/50-pod-metrics.conf", conf)]).await;
    let descriptors = client
        .runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    let keys: HashMap<&str, &Vec<String>> = descriptors
        .iter()
        .map(|d| (d.name.as_str(), &d.label_keys))
        .collect();
    for name in [
        "container_last_seen",
        "container_cpu_usage_seconds_total",
        "container_cpu_user_seconds_total",
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
        "container_processes",
    ] {
        assert!(
            keys.contains_key(name),
            "{name} not listed: {descriptors:?}"
        );
    }
    assert!(
        !keys.contains_key("container_fs_usage_bytes"),
        "disk is not included"
    );
    assert_eq!(
        keys["container_cpu_usage_seconds_total"],
        &["id", "image", "namespace", "pod", "container", "cpu"]
    );

    let pod_id = run_pod(&mut client, pod_config("burner", POD, POD)).await;
    // A second of rest, 48 MiB into the pod's /dev/shm (memory of the
    // container's cgroup), then four seconds of a busy loop.
    let script = "sleep 1; head -c 50331648 /dev/zero > /dev/shm/fill; \
                  end=$(( $(date +%s) + 4 )); while [ $(date +%s) -lt $end ]; do :; done; sleep 600";
    let id = create(
        &mut client,
        &pod_id,
        container("burner", &images.busybox.reference, &["sh", "-c", script]),
    )
    .await
    .unwrap();
    start_container(&mut client, id.clone()).await;
    let first = pod_metrics(&mut client).await;
    assert_eq!(first.pod_sandbox_id, pod_id);
    assert_eq!(first.container_metrics[0].container_id, id);
    let start = by_name(&first);
    // Every metric carries a value for each of its descriptor's label keys.
    for m in first
        .metrics
        .iter()
        .chain(&first.container_metrics[0].metrics)
    {
        assert_eq!(m.label_values.len(), keys[m.name.as_str()].len(), "{m:?}");
    }
    let rx = first
        .metrics
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total");
    let rx = rx.expect("the pod's network counters");
    assert_eq!(
        rx.label_values[..5],
        [
            pod_id.clone(),
            String::new(),
            "default".into(),
            "burner".into(),
            "POD".into()
        ]
    );
    assert!(start["container_processes"] >= 1, "{start:?}");

    // Whole seconds of CPU: on a loaded 2-core machine the busy loop may get
    // well under one CPU, so the wait is long and the bar one second.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = by_name(&pod_metrics(&mut client).await);
        let cpu = now["container_cpu_usage_seconds_total"];
        let split =
            now["container_cpu_user_seconds_total"] + now["container_cpu_system_seconds_total"];
        let grew = now["container_memory_usage_bytes"]
            .saturating_sub(start["container_memory_usage_bytes"]);
        if cpu > start["container_cpu_usage_seconds_total"] && split >= 1 && grew >= 40 << 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no growth: {start:?} then {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    remove_pod(&mut client, &pod_id).await;
}
