//! Version, Status and RuntimeConfig over the real socket, through the CRI
//! client and through crioctl.

use std::time::{Duration, Instant};

use crio_api::cri::{CgroupDriver, RuntimeConfigRequest, StatusRequest, VersionRequest};
use crio_test::TestDaemon;

#[tokio::test(flavor = "multi_thread")]
async fn version_and_runtime_config() {
    let daemon = TestDaemon::start().unwrap();
    let mut client = daemon.client().await.unwrap();
    let v = client
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "crio-rs");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    let rc = client
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_of_an_unknown_container_is_not_found() {
    let daemon = TestDaemon::start().unwrap();
    let mut client = daemon.client().await.unwrap();
    let err = client
        .runtime
        .checkpoint_container(crio_api::cri::CheckpointContainerRequest {
            container_id: "0123456789abcdef".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}

fn network_ready(resp: &crio_api::cri::StatusResponse) -> (bool, String) {
    let cond = resp
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady condition");
    (cond.status, format!("{}: {}", cond.reason, cond.message))
}

#[tokio::test(flavor = "multi_thread")]
async fn network_ready_flips_when_a_cni_config_appears() {
    let daemon = TestDaemon::start().unwrap();
    let mut client = daemon.client().await.unwrap();
    let resp = client
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let runtime_ready = &resp.status.as_ref().unwrap().conditions[0];
    assert_eq!(
        (runtime_ready.r#type.as_str(), runtime_ready.status),
        ("RuntimeReady", true)
    );
    let (ready, why) = network_ready(&resp);
    assert!(!ready);
    assert!(
        why.starts_with("NetworkPluginNotReady") && why.contains("no CNI configuration"),
        "{why}"
    );

    // A broken file keeps the network not ready, and the message names it.
    std::fs::write(daemon.cni_dir().join("05-broken.conflist"), "{").unwrap();
    let resp = client
        .runtime
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (ready, why) = network_ready(&resp);
    assert!(
        !ready && why.contains("05-broken.conflist") && why.contains("invalid JSON"),
        "{why}"
    );

    std::fs::write(
        daemon.cni_dir().join("10-crio.conflist"),
        r#"{"cniVersion":"1.0.0","name":"crio","plugins":[
            {"type":"bridge","bridge":"cni-test0","isGateway":true,"ipMasq":true,
             "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]]}},
            {"type":"portmap","capabilities":{"portMappings":true}}]}"#,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = client
            .runtime
            .status(StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
        let (ready, why) = network_ready(&resp);
        if ready {
            assert!(resp.info["cniconfig"].contains("cni-test0"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "NetworkReady stayed false: {why}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crioctl_version_and_info() {
    let daemon = TestDaemon::start().unwrap();
    let out = daemon.crioctl(&["version"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RuntimeName:  crio-rs"), "{text}");
    assert!(text.contains("RuntimeApiVersion:  v1"), "{text}");

    let out = daemon.crioctl(&["info"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["status"]["conditions"][0]["type"], "RuntimeReady");
    assert_eq!(
        info["config"]["api"]["listen"],
        daemon.socket().display().to_string()
    );

    let out = daemon.crioctl(&["info", "-o", "yaml", "-q"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("type: NetworkReady") && !text.contains("config:"),
        "{text}"
    );
}

#[test]
fn crioctl_reports_an_unreachable_endpoint() {
    let out = std::process::Command::new(crio_test::bins::bin("crioctl"))
        .args(["-r", "unix:///nonexistent/crio.sock", "version"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/crio.sock"), "{stderr}");
}
