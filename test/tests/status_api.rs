//! The status API on the CRI socket: `crio status info|config|containers`
//! print the daemon's answers, curl gets the same JSON over HTTP/1.1, and
//! gRPC keeps working on the same socket.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crio_api::cri::{NamespaceMode, VersionRequest};
use crio_test::bins::bin;
use crio_test::containers::{
    Setup, container, create, pod_status, remove_pod, run_pod, setup, start_container, stop,
};
use crio_test::pods::pod_config;

const POD: i32 = NamespaceMode::Pod as i32;

/// Runs `program args`, waited for at most 30 s.
async fn run(program: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("finished within 30 s")
        .expect("ran")
}

/// `crio status --socket SOCK args`: its stdout, checked successful.
async fn crio_status(socket: &Path, args: &[&str]) -> String {
    let mut all = vec!["status", "--socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run(&bin("crio"), &all).await;
    assert!(out.status.success(), "crio {all:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// curl's body and HTTP code for `path` over the unix socket.
async fn curl(socket: &Path, path: &str) -> (String, String) {
    let url = format!("http://localhost{path}");
    let out = run(
        Path::new("curl"),
        &[
            "-sS",
            "--unix-socket",
            socket.to_str().unwrap(),
            "-w",
            "\n%{http_code}",
            &url,
        ],
    )
    .await;
    assert!(out.status.success(), "curl {path}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (body.to_string(), code.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn crio_status_and_curl_read_the_status_api_beside_grpc() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup().await;
    let socket = world.daemon.socket();
    let logs = world.daemon.path("podlogs");
    let mut pod = pod_config("status", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut client, pod).await;
    let config = container("sleeper", &images.busybox.reference, &["sleep", "3600"]);
    let id = create(&mut client, &pod_id, config).await.unwrap();
    start_container(&mut client, id.clone()).await;
    let pod_ip = pod_status(&mut client, &pod_id).await.network.unwrap().ip;
    assert!(!pod_ip.is_empty());

    // info: the CLI and curl print the same JSON.
    let info_text = crio_status(&socket, &["info"]).await;
    let info: serde_json::Value = serde_json::from_str(&info_text).unwrap();
    assert_eq!(info["storage_driver"], "overlay", "{info}");
    let root = world.daemon.path("root");
    assert_eq!(info["storage_root"], root.to_str().unwrap(), "{info}");
    assert_eq!(info["cgroup_driver"], "cgroupfs", "{info}");
    assert_eq!(info["default_id_mappings"]["uids"][0]["size"], u32::MAX);
    let (curl_info, code) = curl(&socket, "/info").await;
    assert_eq!(code, "200");
    assert_eq!(curl_info, info_text);

    // config: the effective TOML, with this daemon's own paths.
    let toml_text = crio_status(&socket, &["config"]).await;
    let lines: Vec<&str> = toml_text.lines().collect();
    for want in [
        format!("root = \"{}\"", root.display()),
        format!("listen = \"{}\"", socket.display()),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} in {toml_text}");
    }
    let (curl_config, code) = curl(&socket, "/config").await;
    assert_eq!(code, "200");
    assert_eq!(curl_config, toml_text);

    // containers: by a prefix of the ID, the running container's facts.
    let text = crio_status(&socket, &["containers", "--id", &id[..12]]).await;
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pid = info["pid"].as_u64().unwrap();
    assert!(pid > 0, "{info}");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x003600\x00", "{info}");
    assert_eq!(info["sandbox"], pod_id.as_str(), "{info}");
    assert_eq!(info["ip_addresses"][0], pod_ip.as_str(), "{info}");
    let log_path = logs.join("sleeper.log");
    assert_eq!(info["log_path"], log_path.to_str().unwrap(), "{info}");
    assert_eq!(info["image"], images.busybox.reference.as_str(), "{info}");
    assert!(info["image_ref"].as_str().unwrap().len() >= 64, "{info}");
    assert!(info["name"].as_str().unwrap().contains("sleeper"), "{info}");
    assert!(info["created_time"].as_i64().unwrap() > 0, "{info}");
    let rootfs = Path::new(info["root"].as_str().unwrap());
    assert!(rootfs.join("bin/busybox").exists(), "{info}");
    let (curl_container, code) = curl(&socket, &format!("/containers/{id}")).await;
    assert_eq!(code, "200");
    assert_eq!(curl_container, text);

    // An unknown container is a 404 naming it; the CLI fails with it.
    let (body, code) = curl(&socket, "/containers/0123456789ab").await;
    assert_eq!(code, "404");
    assert!(body.contains("\"0123456789ab\" not found"), "{body}");
    let out = run(
        &bin("crio"),
        &[
            "status",
            "--socket",
            socket.to_str().unwrap(),
            "containers",
            "--id",
            "0123456789ab",
        ],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("not found"),
        "{stderr}"
    );
    let (_, code) = curl(&socket, "/nowhere").await;
    assert_eq!(code, "404");

    // pause/unpause: runc sees the container frozen, then running again;
    // unpausing a running container fails, as in CRI-O.
    let runc_status = || {
        let out = std::process::Command::new("runc")
            .arg("--root")
            .arg(world.daemon.path("runc"))
            .args(["state", &id])
            .output()
            .unwrap();
        assert!(out.status.success(), "runc state: {out:?}");
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        state["status"].as_str().unwrap().to_string()
    };
    assert_eq!(curl(&socket, &format!("/pause/{id}")).await.1, "200");
    assert_eq!(runc_status(), "paused");
    assert_eq!(curl(&socket, &format!("/unpause/{id}")).await.1, "200");
    assert_eq!(runc_status(), "running");
    let (body, code) = curl(&socket, &format!("/unpause/{id}")).await;
    assert_eq!(code, "500", "{body}");
    assert_eq!(curl(&socket, "/pause/0123456789ab").await.1, "404");

    // gRPC on the same socket: the open client and a new one both answer.
    let mut fresh = world.daemon.client().await.unwrap();
    for c in [&mut client, &mut fresh] {
        let version = c.runtime.version(VersionRequest::default()).await.unwrap();
        assert_eq!(version.into_inner().runtime_name, "crio-rs");
    }
    stop(&mut client, &id).await;
    remove_pod(&mut client, &pod_id).await;
}
