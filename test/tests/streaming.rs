//! kubectl exec, attach and port-forward against the real daemon: the CRI
//! Exec/Attach/PortForward URLs, the streaming server, the shim's attach
//! sockets, and a port inside a pod's network namespace.

use std::time::{Duration, Instant};

use crio_api::client::CriClient;
use crio_api::cri::{
    AttachRequest, ExecRequest, ExecSyncRequest, NamespaceMode, PortForwardRequest,
};
use crio_streaming::client::{Streams, port_forward, remotecommand};
use crio_test::containers::{Setup, container, create, remove_pod, run_pod, setup};
use crio_test::pods::pod_config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POD: i32 = NamespaceMode::Pod as i32;
const V5: &[&str] = &["v5.channel.k8s.io"];
const V4: &[&str] = &["v4.channel.k8s.io"];

async fn start_container(
    s: &mut Setup,
    pod: &str,
    name: &str,
    cmd: &[&str],
    stdin: (bool, bool),
) -> String {
    let mut config = container(name, &s.images.busybox.reference, cmd);
    (config.stdin, config.stdin_once) = stdin;
    let id = create(&mut s.client, pod, config).await.unwrap();
    crio_test::containers::start_container(&mut s.client, id.clone()).await;
    id
}

async fn exec_url(
    client: &mut CriClient,
    id: &str,
    cmd: &[&str],
    stdin: bool,
    tty: bool,
) -> String {
    client
        .runtime
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

async fn exec_sync(client: &mut CriClient, id: &str, cmd: &[&str]) -> String {
    let r = client
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            timeout: 20,
        })
        .await
        .unwrap()
        .into_inner();
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// Reads `out` into `seen` until `want` shows (15 s at most).
async fn read_until(out: &mut tokio::io::DuplexStream, want: &str, seen: &mut String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "{want:?} not in {seen:?}");
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), out.read(&mut buf)).await
        {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

async fn run(
    url: &str,
    protocols: &[&str],
    stdin: Option<&'static [u8]>,
) -> (Result<i32, String>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = remotecommand(
        url,
        protocols,
        Streams {
            stdin,
            stdout: &mut out,
            stderr: &mut err,
            resize: None,
        },
    )
    .await;
    (
        code.map_err(|e| e.to_string()),
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[tokio::test]
async fn exec_pipes_terminals_exit_codes_and_tokens() {
    let mut s = setup().await;
    let pod = run_pod(&mut s.client, pod_config("exec", POD, POD)).await;
    let id = start_container(&mut s, &pod, "box", &["sleep", "1000"], (false, false)).await;

    // Pipes: stdin through cat, stdout and stderr apart (v5 closes stdin).
    let url = exec_url(
        &mut s.client,
        &id,
        &["sh", "-c", "cat; echo oops >&2"],
        true,
        false,
    )
    .await;
    let (code, out, err) = run(&url, V5, Some(b"through cat\n")).await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Ok(0), "through cat\n", "oops\n")
    );
    for (cmd, want) in [("exit 0", 0), ("exit 1", 1), ("kill -9 $$", 137)] {
        for protocols in [V5, V4] {
            let url = exec_url(&mut s.client, &id, &["sh", "-c", cmd], false, false).await;
            assert_eq!(
                run(&url, protocols, None).await.0,
                Ok(want),
                "{cmd} {protocols:?}"
            );
        }
    }

    // A URL works once; garbage is refused.
    let url = exec_url(&mut s.client, &id, &["true"], false, false).await;
    assert_eq!(run(&url, V5, None).await.0, Ok(0));
    let again = run(&url, V5, None).await.0.unwrap_err();
    assert!(again.contains("404"), "{again}");
    let garbage = format!("{}/nonsense", url.rsplit_once('/').unwrap().0);
    assert!(run(&garbage, V5, None).await.0.unwrap_err().contains("404"));

    // A terminal: the command sees the size the client sends, and changes.
    let url = exec_url(
        &mut s.client,
        &id,
        &["sh", "-c", "read a; stty size; read b; stty size; exit 3"],
        true,
        true,
    )
    .await;
    let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(4);
    let (mut typing, stdin) = tokio::io::duplex(1024);
    let (mut out, outr) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(async move {
        remotecommand(
            &url,
            V5,
            Streams {
                stdin: Some(stdin),
                stdout: outr,
                stderr: tokio::io::sink(),
                resize: Some(resize_rx),
            },
        )
        .await
    });
    let mut seen = String::new();
    resize_tx.send((100, 30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    typing.write_all(b"go\n").await.unwrap();
    read_until(&mut out, "30 100", &mut seen).await;
    resize_tx.send((90, 20)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    typing.write_all(b"go\n").await.unwrap();
    read_until(&mut out, "20 90", &mut seen).await;
    drop(typing);
    assert_eq!(session.await.unwrap().unwrap(), 3);

    // A terminal over SPDY: the size the client sends, the exit code.
    let url = exec_url(
        &mut s.client,
        &id,
        &["sh", "-c", "read a; stty size; exit 5"],
        true,
        true,
    )
    .await;
    let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(4);
    resize_tx.send((132, 43)).await.unwrap();
    let (mut typing, stdin) = tokio::io::duplex(1024);
    let (mut out, outr) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(async move {
        crio_streaming::kube_spdy::remotecommand(
            &url,
            &crio_streaming::kube_spdy::EXEC_PROTOCOLS,
            true,
            Streams {
                stdin: Some(stdin),
                stdout: outr,
                stderr: tokio::io::sink(),
                resize: Some(resize_rx),
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    typing.write_all(b"go\n").await.unwrap();
    let mut seen = String::new();
    read_until(&mut out, "43 132", &mut seen).await;
    assert_eq!(session.await.unwrap().unwrap(), 5);
    drop(typing);

    // A client that vanishes leaves no process behind.
    let url = exec_url(&mut s.client, &id, &["sleep", "777"], false, false).await;
    let gone = tokio::spawn(async move { run(&url, V5, None).await });
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exec_sync(&mut s.client, &id, &["ps"])
        .await
        .contains("sleep 777")
    {
        assert!(Instant::now() < deadline, "the exec never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gone.abort();
    let deadline = Instant::now() + Duration::from_secs(15);
    while exec_sync(&mut s.client, &id, &["ps"])
        .await
        .contains("sleep 777")
    {
        assert!(Instant::now() < deadline, "the abandoned exec still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    remove_pod(&mut s.client, &pod).await;
}

async fn attach_url(client: &mut CriClient, id: &str, stdin: bool) -> String {
    client
        .runtime
        .attach(AttachRequest {
            container_id: id.into(),
            stdin,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

#[tokio::test]
async fn two_attachers_share_output_and_stdin_once_closes_stdin() {
    let mut s = setup().await;
    let pod = run_pod(&mut s.client, pod_config("attach", POD, POD)).await;
    let echo = "while read l; do echo \"got $l\"; done";
    let id = start_container(&mut s, &pod, "echo", &["sh", "-c", echo], (true, false)).await;
    let watcher_url = attach_url(&mut s.client, &id, false).await;
    let (mut watcher_out, watcher_r) = tokio::io::duplex(64 * 1024);
    let watcher = tokio::spawn(async move {
        remotecommand(
            &watcher_url,
            V5,
            Streams {
                stdin: None::<tokio::io::Empty>,
                stdout: watcher_r,
                stderr: tokio::io::sink(),
                resize: None,
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writer_url = attach_url(&mut s.client, &id, true).await;
    let (mut typing, stdin) = tokio::io::duplex(1024);
    let (mut writer_out, writer_r) = tokio::io::duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        remotecommand(
            &writer_url,
            V5,
            Streams {
                stdin: Some(stdin),
                stdout: writer_r,
                stderr: tokio::io::sink(),
                resize: None,
            },
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    typing.write_all(b"hi\n").await.unwrap();
    for out in [&mut writer_out, &mut watcher_out] {
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
            .await
            .expect("attach output")
            .unwrap();
        assert_eq!(&buf[..n], b"got hi\n");
    }
    writer.abort();
    watcher.abort();

    // stdin_once: when the attacher's stdin ends, the container's does.
    let once = start_container(&mut s, &pod, "once", &["cat"], (true, true)).await;
    let url = attach_url(&mut s.client, &once, true).await;
    let (code, out, _) = run(&url, V5, Some(b"only once\n")).await;
    assert_eq!((code, out.as_str()), (Ok(0), "only once\n"));
    let st = crio_test::containers::wait_exited(&mut s.client, &once).await;
    assert_eq!(st.exit_code, 0);
    remove_pod(&mut s.client, &pod).await;
}

async fn forward_url(client: &mut CriClient, pod: &str, port: i32) -> String {
    client
        .runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![port],
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

/// GET `path` over a forwarded connection; the response body.
async fn http_get(url: &str, path: &str, transport: crio_streaming::Transport) -> Vec<u8> {
    let mut conn = crio_streaming::client::connect_port(url, 8080, transport)
        .await
        .unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    response.split_off(split + 4)
}

#[tokio::test]
async fn port_forward_to_a_server_in_the_pod() {
    let mut s = setup().await;
    let pod = run_pod(&mut s.client, pod_config("web", POD, POD)).await;
    let serve = "mkdir -p /www && dd if=/dev/urandom of=/www/big bs=1M count=10 2>/dev/null && echo ready > /www/ready && exec httpd -f -p 8080 -h /www";
    let id = start_container(&mut s, &pod, "web", &["sh", "-c", serve], (false, false)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = forward_url(&mut s.client, &pod, 8080).await;
        let mut conn = port_forward(&url, 8080).await.unwrap();
        let _ = conn.write_all(b"GET /ready HTTP/1.0\r\n\r\n").await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got)).await;
        if String::from_utf8_lossy(&got).ends_with("ready\n") {
            break;
        }
        assert!(Instant::now() < deadline, "httpd never answered: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sum = exec_sync(&mut s.client, &id, &["sha256sum", "/www/big"]).await;
    let want = sum.split_whitespace().next().unwrap().to_string();
    let mut fetches = Vec::new();
    use crio_streaming::Transport;
    for transport in [Transport::Spdy, Transport::WebSocket, Transport::Spdy] {
        let url = forward_url(&mut s.client, &pod, 8080).await;
        fetches.push(tokio::spawn(async move {
            http_get(&url, "/big", transport).await
        }));
    }
    for f in fetches {
        let body = f.await.unwrap();
        assert_eq!(body.len(), 10 << 20);
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&body)),
            want,
            "body corrupted"
        );
    }
    // A port nobody listens on: the stream ends, no hang.
    let url = forward_url(&mut s.client, &pod, 9999).await;
    let mut conn = port_forward(&url, 9999).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
        .await
        .expect("a closed port must not hang")
        .unwrap();
    assert!(got.is_empty());

    // crioctl port-forward and exec -i, as a user would run them.
    let d = &s.world.daemon;
    let mut child = std::process::Command::new(crio_test::bins::bin("crioctl"))
        .arg("--runtime-endpoint")
        .arg(d.endpoint())
        .args(["port-forward", "--transport", "websocket", &pod, "0:8080"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let local = line
        .strip_prefix("Forwarding from ")
        .and_then(|l| l.split(" -> ").next())
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    let fetched = std::process::Command::new("curl")
        .args(["-s", &format!("http://{local}/ready")])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&fetched.stdout), "ready\n");
    let out = std::process::Command::new(crio_test::bins::bin("crioctl"))
        .arg("--runtime-endpoint")
        .arg(d.endpoint())
        .args(["exec", "-i", &id, "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"shout\n")?;
            drop(c.stdin.take());
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
    assert!(out.status.success());
    remove_pod(&mut s.client, &pod).await;
}
