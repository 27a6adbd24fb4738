//! The Kubernetes protocols over SPDY/3.1 (what kubelet and the API server
//! speak to runtimes): remotecommand (`v4.channel.k8s.io` … `channel.k8s.io`),
//! where the client opens one stream per `streamType` (error, stdin,
//! stdout, stderr, resize), and `portforward.k8s.io`, where it opens an
//! error and a data stream per connection, tagged with `port` and
//! `requestID`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::client::{ClientError, SessionInput, SessionOutput};
use crate::spdy::{Session, Stream};
use crate::ws::{self, Session as Kind};
use crate::{Backend, StreamIo};

/// The remotecommand versions over SPDY, preferred first.
pub const EXEC_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The port-forward protocol over SPDY.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// How long a client has to open its streams.
const STREAM_CREATION: Duration = Duration::from_secs(30);

/// Reads JSON sizes `{"Width":W,"Height":H}` from a resize stream.
async fn read_sizes(mut r: impl AsyncRead + Unpin, tx: mpsc::Sender<(u16, u16)>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        if pending.len() > 64 * 1024 {
            return;
        }
        let mut de =
            serde_json::Deserializer::from_slice(&pending).into_iter::<serde_json::Value>();
        let mut used = 0;
        while let Some(Ok(v)) = de.next() {
            used = de.byte_offset();
            let dim = |k: &str| v[k].as_u64().unwrap_or(0).min(u16::MAX.into()) as u16;
            let _ = tx.try_send((dim("Width"), dim("Height")));
        }
        pending.drain(..used);
    }
}

/// Serves an exec or attach session on a SPDY session.
pub async fn serve_remotecommand(
    session: Arc<Session>,
    protocol: &str,
    kind: Kind,
    backend: Arc<dyn Backend>,
) {
    let (stdin, stdout, stderr, tty) = match &kind {
        Kind::Exec(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
        Kind::Attach(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
    };
    let resize = tty && protocol != "v2.channel.k8s.io" && protocol != "channel.k8s.io";
    let wanted: Vec<&str> = [
        Some("error"),
        stdin.then_some("stdin"),
        stdout.then_some("stdout"),
        stderr.then_some("stderr"),
        resize.then_some("resize"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut streams: HashMap<String, Stream> = HashMap::new();
    let collect = async {
        while streams.len() < wanted.len() {
            let s = session.accept().await?;
            let kind = s.header("streamtype").unwrap_or_default().to_string();
            if wanted.contains(&kind.as_str()) {
                streams.insert(kind, s);
            }
        }
        Some(())
    };
    if tokio::time::timeout(STREAM_CREATION, collect)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        session.close().await;
        return;
    }
    let (gone_tx, gone) = watch::channel(false);
    let watcher = {
        let session = session.clone();
        tokio::spawn(async move {
            while session.accept().await.is_some() {}
            let _ = gone_tx.send(true);
        })
    };
    let mut take = |k: &str| streams.remove(k);
    let error = take("error");
    let (resize_tx, resize_rx) = mpsc::channel(8);
    if let Some(r) = take("resize") {
        tokio::spawn(read_sizes(r.pipe, resize_tx));
    }
    let mut flushed = Vec::new();
    let mut writer = |s: Option<Stream>| {
        s.map(|s| {
            flushed.push(s.sent);
            Box::new(s.pipe) as crate::Output
        })
    };
    let io = StreamIo {
        stdin: take("stdin").map(|s| Box::new(s.pipe) as crate::Input),
        stdout: writer(take("stdout")),
        stderr: writer(take("stderr")),
        resize: resize_rx,
        gone,
    };
    let result = match &kind {
        Kind::Exec(r) => backend.exec(r, io).await,
        Kind::Attach(r) => backend.attach(r, io).await.map(|()| 0),
    };
    let v4 = protocol.starts_with("v4");
    let status = match &result {
        Ok(code) if v4 => Some(ws::exit_status(*code).to_string()),
        Ok(_) => None,
        Err(e) if v4 => Some(ws::error_status(&e.to_string()).to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(mut e) = error {
        if let Some(status) = status {
            let _ = e.pipe.write_all(status.as_bytes()).await;
        }
        let _ = e.pipe.shutdown().await;
        flushed.push(e.sent);
    }
    for f in flushed {
        let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
    }
    session.close().await;
    watcher.abort();
}

/// Serves port-forwarding on a SPDY session: each pair of error and data
/// streams with the same `requestID` is one connection to `port`. At most
/// `most` requests wait for their second stream and at most `most`
/// connections run at once; a stream beyond either bound is refused (closed,
/// the reason written on an error stream).
pub async fn serve_port_forward(
    session: Arc<Session>,
    pod: String,
    allowed: Vec<i32>,
    backend: Arc<dyn Backend>,
    most: usize,
) {
    let running = Arc::new(tokio::sync::Semaphore::new(most));
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(s) = session.accept().await {
        let request = s.header("requestid").unwrap_or_default().to_string();
        let is_error = match s.header("streamtype").unwrap_or_default() {
            "error" => true,
            "data" => false,
            _ => continue,
        };
        if !pending.contains_key(&request) && pending.len() >= most {
            let why = "too many port-forward streams waiting for their pair";
            refuse(s, if is_error { why } else { "" });
            continue;
        }
        let entry = pending.entry(request.clone()).or_default();
        if is_error {
            entry.0 = Some(s);
        } else {
            entry.1 = Some(s);
        }
        if entry.0.is_none() || entry.1.is_none() {
            continue;
        }
        let Some((Some(mut error), Some(data))) = pending.remove(&request) else {
            continue;
        };
        let Ok(permit) = running.clone().try_acquire_owned() else {
            refuse(error, "too many port-forward connections at once");
            refuse(data, "");
            continue;
        };
        let backend = backend.clone();
        let pod = pod.clone();
        let allowed = allowed.clone();
        tokio::spawn(async move {
            let port = data.header("port").and_then(|p| p.parse::<u16>().ok());
            let result = match port {
                Some(p) if allowed.is_empty() || allowed.contains(&i32::from(p)) => {
                    backend.port_forward(&pod, p, Box::new(data.pipe)).await
                }
                _ => Err(format!(
                    "port {:?} is not among the requested {allowed:?}",
                    data.header("port")
                )
                .into()),
            };
            drop(permit);
            if let Err(e) = result {
                let _ = error.pipe.write_all(e.to_string().as_bytes()).await;
            }
            let _ = error.pipe.shutdown().await;
        });
    }
}

/// Closes a port-forward stream, writing `why` first (for an error stream).
fn refuse(stream: Stream, why: &'static str) {
    tokio::spawn(async move {
        let mut pipe = stream.pipe;
        if !why.is_empty() {
            let _ = pipe.write_all(why.as_bytes()).await;
        }
        let _ = pipe.shutdown().await;
    });
}

/// Opens a SPDY session at `url` (`http://host:port/path`), offering
/// `protocols`; the session and the protocol the server chose.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<(Arc<Session>, String), ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::NotHttp { url: url.into() })?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let io = |source| ClientError::Io {
        url: url.into(),
        source,
    };
    let mut tcp = tokio::net::TcpStream::connect(host).await.map_err(io)?;
    let mut request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for p in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.map_err(io)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(ClientError::HeadersTooLong { url: url.into() });
        }
        match tcp.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return Err(ClientError::ClosedDuringUpgrade { url: url.into() }),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or_default().to_string();
    if !status.contains(" 101 ") {
        let mut body = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut body))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        return Err(ClientError::Upgrade {
            url: url.into(),
            status,
            body: String::from_utf8_lossy(&body[..n]).trim().to_string(),
        });
    }
    let chosen = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((Session::start(tcp, false), chosen))
}

fn stream_type(kind: &str) -> Vec<(String, String)> {
    vec![("streamType".into(), kind.into())]
}

/// Runs an exec or attach session at `url` over SPDY; the exit code.
pub async fn remotecommand<I: SessionInput, O: SessionOutput, E: SessionOutput>(
    url: &str,
    protocols: &[&str],
    tty: bool,
    streams: crate::client::Streams<I, O, E>,
) -> Result<i32, ClientError> {
    let (session, chosen) = connect(url, protocols).await?;
    let mut error = session.open(stream_type("error")).await?;
    let mut tasks = Vec::new();
    if let Some(mut input) = streams.stdin {
        let mut s = session.open(stream_type("stdin")).await?;
        tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut input, &mut s.pipe).await;
            let _ = s.pipe.shutdown().await;
            let _ = s.sent.await;
        }));
    }
    let mut stdout = session.open(stream_type("stdout")).await?;
    let mut stderr = if tty {
        None
    } else {
        Some(session.open(stream_type("stderr")).await?)
    };
    if let (Some(mut sizes), true) = (
        streams.resize,
        tty && chosen.starts_with('v') && !chosen.starts_with("v2"),
    ) {
        let mut s = session.open(stream_type("resize")).await?;
        tasks.push(tokio::spawn(async move {
            while let Some((w, h)) = sizes.recv().await {
                let size = serde_json::json!({"Width": w, "Height": h}).to_string();
                if s.pipe.write_all(size.as_bytes()).await.is_err() {
                    break;
                }
            }
        }));
    }
    let (mut out, mut err) = (streams.stdout, streams.stderr);
    let copy_out = async {
        let _ = tokio::io::copy(&mut stdout.pipe, &mut out).await;
        let _ = out.flush().await;
    };
    let copy_err = async {
        if let Some(e) = stderr.as_mut() {
            let _ = tokio::io::copy(&mut e.pipe, &mut err).await;
            let _ = err.flush().await;
        }
    };
    let mut status = Vec::new();
    let read_status = async {
        let _ = (&mut error.pipe)
            .take(1 << 20)
            .read_to_end(&mut status)
            .await;
    };
    tokio::join!(copy_out, copy_err, read_status);
    for t in tasks {
        t.abort();
    }
    session.close().await;
    if chosen.starts_with("v4") {
        let value: serde_json::Value = serde_json::from_slice(&status)?;
        ws::status_exit_code(&value)
    } else if status.is_empty() {
        Ok(0)
    } else {
        Err(ClientError::Server(
            String::from_utf8_lossy(&status).into_owned(),
        ))
    }
}

/// Opens a forwarded connection to `port` over SPDY.
pub async fn port_forward(url: &str, port: u16) -> Result<tokio::io::DuplexStream, ClientError> {
    let (session, chosen) = connect(url, &[PORT_FORWARD_PROTOCOL]).await?;
    if chosen != PORT_FORWARD_PROTOCOL {
        return Err(ClientError::Protocol {
            url: url.into(),
            chosen,
            wanted: PORT_FORWARD_PROTOCOL,
        });
    }
    let headers = |kind: &str| {
        vec![
            ("streamType".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestID".to_string(), "0".to_string()),
        ]
    };
    let error = session.open(headers("error")).await?;
    let data = session.open(headers("data")).await?;
    tokio::spawn(async move {
        let mut error = error;
        let mut message = String::new();
        let _ = (&mut error.pipe)
            .take(64 * 1024)
            .read_to_string(&mut message)
            .await;
        if !message.is_empty() {
            eprintln!("port-forward: {message}");
        }
        let _ = session;
    });
    Ok(data.pipe)
}
