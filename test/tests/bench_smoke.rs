//! The benchmark harness keeps working: a smoke run with a few samples.
//! (No timing is asserted: figures belong in docs/benchmarks.md.)

use crio_test::bins::bin;

#[test]
fn bench_smoke_run_reports_every_measure() {
    let out = std::process::Command::new(bin("crio-bench"))
        .arg("--smoke")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "run_pod_sandbox",
        "stop_pod_sandbox",
        "remove_pod_sandbox",
        "list_pod_sandbox_5_pods",
    ] {
        assert!(
            v["crio-rs"]["pods"][key]["median_ms"].as_f64().is_some(),
            "{key} missing: {v}"
        );
    }
    assert_eq!(v["crio-rs"]["pods"]["recovered_pods"], 5);
    assert!(
        v["crio-rs"]["pods"]["daemon_rss_idle_kib"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        v["crio-rs"]["images"]["pull_cold"]["median_ms"]
            .as_f64()
            .is_some()
    );
    let containers = &v["crio-rs"]["containers"];
    for key in [
        "pod_and_container_total",
        "exec_sync",
        "container_status",
        "list_containers_6_containers",
    ] {
        assert!(
            containers[key]["median_ms"].as_f64().is_some(),
            "{key} missing: {containers}"
        );
    }
    assert!(
        containers["shim_pss_per_pod_with_container_kib"]
            .as_u64()
            .unwrap()
            > 0
    );
    for clients in [1, 2] {
        let key = format!("pods_per_s_4_pods_{clients}_clients");
        assert!(
            v["crio-rs"]["throughput"][&key].as_f64().unwrap() > 0.0,
            "{key} missing"
        );
    }
    let pleg = &v["crio-rs"]["pleg"];
    assert_eq!(pleg["containers"], 4, "{pleg}");
    for key in ["list_containers", "container_status"] {
        assert_eq!(pleg[key]["samples"], 10, "{key}: {pleg}");
        assert!(pleg[key]["p99_ms"].as_f64().is_some(), "{key}: {pleg}");
    }
}
