//! The daemon's log: `log_format = "json"` makes every line a JSON object;
//! each RPC is logged at debug with its result and duration, a failed one
//! at warn with its gRPC code; `log_filter` keeps only matching lines.

use std::time::{Duration, Instant};

use crio_api::cri::{ContainerStatusRequest, VersionRequest};
use crio_test::TestDaemon;
use serde_json::Value;

const DROP_IN: &str = "conf.d/50-logs.conf";

/// A Version call and a ContainerStatus of a container that does not exist.
async fn one_good_one_failed_call(daemon: &TestDaemon) {
    let mut client = daemon.client().await.unwrap();
    client
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap();
    let missing = client
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: "abcdef".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// Waits (at most 5 s) until a line of the log satisfies `found`.
fn wait_for_line(daemon: &TestDaemon, found: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log().lines().any(&found) {
        assert!(Instant::now() < deadline, "not in:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_with_each_rpc_its_result_and_duration() {
    let conf = "[crio.runtime]\nlog_format = \"json\"\n";
    let daemon = TestDaemon::start_with_files("", &[], &[(DROP_IN, conf)]).unwrap();
    one_good_one_failed_call(&daemon).await;
    wait_for_line(&daemon, |l| l.contains("ContainerStatus"));

    let log = daemon.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string())
    );
    let rpc = |name: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["rpc"] == name)
            .unwrap_or_else(|| panic!("no {name} line in:\n{log}"))
    };
    let version = rpc("Version");
    assert_eq!(version["level"], "DEBUG");
    assert_eq!(version["fields"]["code"], "OK");
    assert!(version["fields"]["duration_ms"].as_f64().unwrap() >= 0.0);
    let status = rpc("ContainerStatus");
    assert_eq!(status["level"], "WARN");
    assert_eq!(status["fields"]["code"], "NotFound");
    assert!(status["fields"]["duration_ms"].is_f64(), "{status}");
    assert!(
        status["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("abcdef"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_filter_keeps_only_matching_lines() {
    let conf = "[crio.runtime]\nlog_filter = \"RPC (done|failed)\"\n";
    let daemon = TestDaemon::start_with_files("", &[], &[(DROP_IN, conf)]).unwrap();
    one_good_one_failed_call(&daemon).await;
    wait_for_line(&daemon, |l| l.contains("rpc=ContainerStatus"));

    let log = daemon.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.iter().any(|l| l.contains("rpc=Version")), "{log}");
    for line in &lines {
        assert!(
            line.contains("RPC done") || line.contains("RPC failed"),
            "{line:?} does not match the filter"
        );
    }
    // What it kept out: the start-up line every daemon logs.
    assert!(!log.contains("serving the CRI"), "{log}");
}
