//! Server and client together with an in-process backend (a fake: the
//! daemon's real backend is tested in the integration tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crio_streaming::client::{Streams, port_forward, remotecommand};
use crio_streaming::ws::EXEC_PROTOCOLS;
use crio_streaming::{
    AttachRequest, Backend, BackendError, Connection, ExecRequest, PortForwardRequest, Request,
    Server, ServerConfig, StreamIo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `cat` for exec (stdin to stdout, "err" to stderr, the first argument as
/// the exit code); attach reports sizes; port 7 echoes, others fail.
#[derive(Default)]
struct Fake {
    ended: AtomicUsize,
}

#[async_trait::async_trait]
impl Backend for Fake {
    async fn exec(&self, req: &ExecRequest, mut io: StreamIo) -> Result<i32, BackendError> {
        if req.cmd.first().map(String::as_str) == Some("hang") {
            let _ = io.gone.wait_for(|g| *g).await;
            self.ended.fetch_add(1, Ordering::SeqCst);
            return Ok(137);
        }
        let code: i32 = req.cmd.first().and_then(|c| c.parse().ok()).unwrap_or(0);
        if let Some(mut e) = io.stderr.take() {
            e.write_all(b"err").await.unwrap();
        }
        match (io.stdin.take(), io.stdout.take()) {
            (Some(mut i), Some(mut o)) => {
                tokio::io::copy(&mut i, &mut o).await.unwrap();
            }
            (None, Some(mut o)) => o.write_all(b"no stdin").await.unwrap(),
            _ => {}
        }
        Ok(code)
    }

    async fn attach(&self, _req: &AttachRequest, mut io: StreamIo) -> Result<(), BackendError> {
        let mut out = io.stdout.take().unwrap();
        let (w, h) = io.resize.recv().await.ok_or("no size")?;
        out.write_all(format!("{w}x{h}").as_bytes()).await.unwrap();
        Ok(())
    }

    async fn port_forward(
        &self,
        _pod: &str,
        port: u16,
        mut conn: Box<dyn Connection>,
    ) -> Result<(), BackendError> {
        if port != 7 {
            return Err(format!("connection refused on port {port}").into());
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).await?;
        }
        Ok(conn.shutdown().await?)
    }
}

async fn server(ttl: Duration) -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let config = ServerConfig {
        token_ttl: ttl,
        ..Default::default()
    };
    (Server::start(config, fake.clone()).await.unwrap(), fake)
}

fn exec(cmd: &str, stdin: bool, tty: bool) -> Request {
    Request::Exec(ExecRequest {
        container_id: "c".into(),
        cmd: vec![cmd.into()],
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    })
}

async fn run(
    url: &str,
    protocols: &[&str],
    input: &'static [u8],
) -> (Result<i32, String>, Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = remotecommand(
        url,
        protocols,
        Streams {
            stdin: Some(input),
            stdout: &mut out,
            stderr: &mut err,
            resize: None,
        },
    )
    .await;
    (code.map_err(|e| e.to_string()), out, err)
}

#[tokio::test]
async fn exec_streams_and_exit_codes_in_every_protocol() {
    let (s, _) = server(Duration::from_secs(60)).await;
    // Only v5 can close stdin: before it, stdin lasts as long as the session.
    for (protocol, stdin) in [
        ("v5.channel.k8s.io", true),
        ("v4.channel.k8s.io", false),
        ("v4.base64.channel.k8s.io", false),
    ] {
        for code in [0, 1, 137] {
            let url = s.url(exec(&code.to_string(), stdin, false)).unwrap();
            let (got, out, err) = run(&url, &[protocol], b"hello through stdin").await;
            assert_eq!(got, Ok(code), "{protocol}");
            let want: &[u8] = if stdin {
                b"hello through stdin"
            } else {
                b"no stdin"
            };
            assert_eq!(out, want, "{protocol}");
            assert_eq!(err, b"err", "{protocol}");
        }
    }
    // The unversioned protocol has no status: failures only as text.
    let url = s.url(exec("3", false, false)).unwrap();
    let (got, out, _) = run(&url, &["channel.k8s.io"], b"x").await;
    assert_eq!((got, out), (Ok(0), b"no stdin".to_vec()));
}

#[tokio::test]
async fn tokens_are_single_use_and_checked() {
    let (s, _) = server(Duration::from_secs(60)).await;
    let url = s.url(exec("0", false, false)).unwrap();
    assert_eq!(run(&url, &EXEC_PROTOCOLS, b"").await.0, Ok(0));
    let again = run(&url, &EXEC_PROTOCOLS, b"").await.0.unwrap_err();
    assert!(again.contains("404"), "{again}");
    let base = url.rsplit_once('/').unwrap().0;
    let garbage = run(&format!("{base}/garbage"), &EXEC_PROTOCOLS, b"")
        .await
        .0
        .unwrap_err();
    assert!(garbage.contains("404"), "{garbage}");
    // A token for exec does not open an attach.
    let url = s
        .url(exec("0", false, false))
        .unwrap()
        .replace("/exec/", "/attach/");
    assert!(
        run(&url, &EXEC_PROTOCOLS, b"")
            .await
            .0
            .unwrap_err()
            .contains("404")
    );
    let (short, _) = server(Duration::from_millis(10)).await;
    let url = short.url(exec("0", false, false)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let expired = run(&url, &EXEC_PROTOCOLS, b"").await.0.unwrap_err();
    assert!(expired.contains("404"), "{expired}");
    let unknown = run(
        &s.url(exec("0", false, false)).unwrap(),
        &["v9.channel.k8s.io"],
        b"",
    )
    .await
    .0
    .unwrap_err();
    assert!(unknown.contains("400"), "{unknown}");
}

#[tokio::test]
async fn resize_reaches_the_backend() {
    let (s, _) = server(Duration::from_secs(60)).await;
    let url = s
        .url(Request::Attach(AttachRequest {
            container_id: "c".into(),
            tty: true,
            stdout: true,
            ..Default::default()
        }))
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send((120, 40)).await.unwrap();
    let mut out = Vec::new();
    let code = remotecommand(
        &url,
        &EXEC_PROTOCOLS,
        Streams {
            stdin: None::<&[u8]>,
            stdout: &mut out,
            stderr: tokio::io::sink(),
            resize: Some(rx),
        },
    )
    .await;
    assert_eq!(code.unwrap(), 0);
    assert_eq!(out, b"120x40");
}

#[tokio::test]
async fn a_client_that_vanishes_ends_the_backend_call() {
    let (s, fake) = server(Duration::from_secs(60)).await;
    let url = s.url(exec("hang", true, false)).unwrap();
    let session = tokio::spawn(async move {
        let mut never = tokio::io::empty();
        let _ = remotecommand(
            &url,
            &EXEC_PROTOCOLS,
            Streams {
                stdin: Some(tokio::io::repeat(b'x').take(10)),
                stdout: &mut never,
                stderr: tokio::io::sink(),
                resize: None,
            },
        )
        .await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    session.abort();
    for _ in 0..100 {
        if fake.ended.load(Ordering::SeqCst) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backend never saw the client go");
}

#[tokio::test]
async fn port_forward_moves_data_intact_concurrently_and_reports_errors() {
    let (s, _) = server(Duration::from_secs(60)).await;
    let request = || {
        Request::PortForward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            ports: vec![],
        })
    };
    let body: Vec<u8> = (0..10 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let body = Arc::new(body);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let url = s.url(request()).unwrap();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let conn = port_forward(&url, 7).await.unwrap();
            let (mut r, mut w) = tokio::io::split(conn);
            let sent = body.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            got
        }));
    }
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.len(), body.len());
        assert!(got == *body, "data corrupted");
    }
    // A closed port: the stream ends (the error stream said why), no hang.
    let url = s.url(request()).unwrap();
    let mut conn = port_forward(&url, 8).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
        .await
        .expect("a refused port must not hang")
        .unwrap();
    assert!(got.is_empty());
    // A port the request did not allow is refused up front.
    let url = s
        .url(Request::PortForward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            ports: vec![80],
        }))
        .unwrap();
    let err = port_forward(&url, 81).await.unwrap_err().to_string();
    assert!(err.contains("400"), "{err}");
}

mod spdy {
    use super::*;
    use crio_streaming::kube_spdy;

    #[tokio::test]
    async fn exec_over_spdy_in_every_version() {
        let (s, _) = server(Duration::from_secs(60)).await;
        for protocol in kube_spdy::EXEC_PROTOCOLS {
            for code in [0, 1, 137] {
                let url = s.url(exec(&code.to_string(), true, false)).unwrap();
                let (mut out, mut err) = (Vec::new(), Vec::new());
                let got = kube_spdy::remotecommand(
                    &url,
                    &[protocol],
                    false,
                    Streams {
                        stdin: Some(&b"spdy stdin"[..]),
                        stdout: &mut out,
                        stderr: &mut err,
                        resize: None,
                    },
                )
                .await;
                // Only v4 carries exit codes; older versions report success.
                let want = if protocol.starts_with("v4") { code } else { 0 };
                assert_eq!(got.unwrap(), want, "{protocol}");
                assert_eq!(
                    (out.as_slice(), err.as_slice()),
                    (&b"spdy stdin"[..], &b"err"[..])
                );
            }
        }
        let url = s.url(exec("0", false, false)).unwrap();
        let err = kube_spdy::remotecommand(
            &url,
            &["v9.channel.k8s.io"],
            false,
            Streams {
                stdin: None::<&[u8]>,
                stdout: tokio::io::sink(),
                stderr: tokio::io::sink(),
                resize: None,
            },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("403"), "{err}");
    }

    #[tokio::test]
    async fn resize_over_spdy() {
        let (s, _) = server(Duration::from_secs(60)).await;
        let url = s
            .url(Request::Attach(AttachRequest {
                container_id: "c".into(),
                tty: true,
                stdout: true,
                ..Default::default()
            }))
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send((81, 25)).await.unwrap();
        let mut out = Vec::new();
        let code = kube_spdy::remotecommand(
            &url,
            &kube_spdy::EXEC_PROTOCOLS,
            true,
            Streams {
                stdin: None::<&[u8]>,
                stdout: &mut out,
                stderr: tokio::io::sink(),
                resize: Some(rx),
            },
        )
        .await;
        assert_eq!((code.unwrap(), out), (0, b"81x25".to_vec()));
    }

    #[tokio::test]
    async fn port_forward_over_spdy() {
        let (s, _) = server(Duration::from_secs(60)).await;
        let request = || {
            Request::PortForward(PortForwardRequest {
                pod_sandbox_id: "p".into(),
                ports: vec![7, 8],
            })
        };
        let body: Arc<Vec<u8>> =
            Arc::new((0..10 << 20).map(|i: u32| (i * 13 % 251) as u8).collect());
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let url = s.url(request()).unwrap();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let conn = kube_spdy::port_forward(&url, 7).await.unwrap();
                let (mut r, mut w) = tokio::io::split(conn);
                let sent = body.clone();
                tokio::spawn(async move {
                    w.write_all(&sent).await.unwrap();
                    w.shutdown().await.unwrap();
                });
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                got
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap() == *body, "data corrupted over SPDY");
        }
        let url = s.url(request()).unwrap();
        let mut conn = kube_spdy::port_forward(&url, 8).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
            .await
            .expect("a refused port must not hang")
            .unwrap();
        assert!(got.is_empty());
    }
}

#[tokio::test]
async fn idle_sessions_are_closed_on_both_transports() {
    let fake = Arc::new(Fake::default());
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let s = Server::start(config, fake.clone()).await.unwrap();
    for transport in [
        crio_streaming::Transport::WebSocket,
        crio_streaming::Transport::Spdy,
    ] {
        let url = s.url(exec("hang", true, false)).unwrap();
        // A client that holds stdin open and sends nothing.
        let (_keep, stdin) = tokio::io::duplex(16);
        let ended = tokio::time::timeout(
            Duration::from_secs(10),
            crio_streaming::client::session(
                &url,
                transport,
                false,
                Streams {
                    stdin: Some(stdin),
                    stdout: tokio::io::sink(),
                    stderr: tokio::io::sink(),
                    resize: None,
                },
            ),
        )
        .await;
        assert!(ended.is_ok(), "{transport:?}: the idle session stayed open");
    }
    for _ in 0..100 {
        if fake.ended.load(Ordering::SeqCst) == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backend calls of idle sessions did not end");
}
