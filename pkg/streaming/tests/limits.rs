//! What a peer of the streaming port cannot do: hold connections without
//! sending a request or after its answer, take more connections than the
//! bound, or pile up port-forward streams in a session.

use std::sync::Arc;
use std::time::Duration;

use crio_streaming::kube_spdy::{self, PORT_FORWARD_PROTOCOL};
use crio_streaming::{
    AttachRequest, Backend, BackendError, Connection, ExecRequest, PortForwardRequest, Request,
    Server, ServerConfig, StreamIo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Port 7 echoes; nothing else is served.
struct Echo;

#[async_trait::async_trait]
impl Backend for Echo {
    async fn exec(&self, _req: &ExecRequest, _io: StreamIo) -> Result<i32, BackendError> {
        Err("no exec here".into())
    }

    async fn attach(&self, _req: &AttachRequest, _io: StreamIo) -> Result<(), BackendError> {
        Err("no attach here".into())
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
        let (mut r, mut w) = tokio::io::split(&mut conn);
        tokio::io::copy(&mut r, &mut w).await?;
        Ok(conn.shutdown().await?)
    }
}

async fn start(config: ServerConfig) -> Server {
    Server::start(config, Arc::new(Echo)).await.unwrap()
}

/// What the server sends until it closes the connection, if it does within
/// `wait`.
async fn until_closed(tcp: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut got = Vec::new();
    match tokio::time::timeout(wait, tcp.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

const UNKNOWN_URL: &[u8] = b"GET /exec/unknown HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_connection_that_sends_no_request_head_is_closed() {
    let s = start(ServerConfig {
        header_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let addr = s.local_addr();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /exec/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for (what, tcp) in [("silent", &mut silent), ("partial", &mut partial)] {
        let got = until_closed(tcp, Duration::from_secs(5)).await;
        assert!(got.is_some(), "{what}: still open after the header timeout");
    }
    // A client that sends its request in time is answered.
    let mut prompt = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    prompt.write_all(UNKNOWN_URL).await.unwrap();
    let got = until_closed(&mut prompt, Duration::from_secs(5)).await;
    assert!(got.unwrap_or_default().starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn a_connection_serves_one_request() {
    let s = start(ServerConfig::default()).await;
    // Streaming clients send one upgrade request per connection; one that
    // is not upgraded ends it, so no connection idles between requests.
    let mut tcp = TcpStream::connect(s.local_addr()).await.unwrap();
    tcp.write_all(UNKNOWN_URL).await.unwrap();
    let got = until_closed(&mut tcp, Duration::from_secs(2)).await;
    let got = got.expect("the connection stayed open after its response");
    assert!(got.starts_with("HTTP/1.1 404"), "{got}");
}

#[tokio::test]
async fn connections_beyond_the_bound_wait_until_others_go() {
    let s = start(ServerConfig {
        max_connections: 2,
        ..Default::default()
    })
    .await;
    let addr = s.local_addr();
    let idle: Vec<TcpStream> = vec![
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    // Let the server take both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(UNKNOWN_URL).await.unwrap();
    let mut head = [0u8; 12];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut head)).await;
    assert!(early.is_err(), "served beyond the bound: {early:?}");
    drop(idle);
    tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut head))
        .await
        .expect("not served after the other connections went")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
}

fn headers(kind: &str, request: u32, port: u16) -> Vec<(String, String)> {
    vec![
        ("streamType".into(), kind.into()),
        ("port".into(), port.to_string()),
        ("requestID".into(), request.to_string()),
    ]
}

/// Reads a stream's pipe to its end, if it ends within `wait`.
async fn ended(pipe: &mut tokio::io::DuplexStream, wait: Duration) -> Option<String> {
    let mut got = String::new();
    tokio::time::timeout(wait, pipe.read_to_string(&mut got))
        .await
        .ok()
        .map(|_| got)
}

#[tokio::test]
async fn a_port_forward_session_bounds_its_streams() {
    let s = start(ServerConfig {
        max_port_forward_streams: 4,
        ..Default::default()
    })
    .await;
    let url = s
        .url(Request::PortForward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            ports: Vec::new(),
        }))
        .unwrap();
    let (session, chosen) = kube_spdy::connect(&url, &[PORT_FORWARD_PROTOCOL])
        .await
        .unwrap();
    assert_eq!(chosen, PORT_FORWARD_PROTOCOL);
    // Four error streams wait for their data streams; a fifth is refused.
    let mut waiting = Vec::new();
    for request in 0..4 {
        waiting.push(session.open(headers("error", request, 7)).await.unwrap());
    }
    let mut refused = session.open(headers("error", 4, 7)).await.unwrap();
    let said = ended(&mut refused.pipe, Duration::from_secs(5))
        .await
        .expect("a stream beyond the bound stayed open");
    assert!(said.contains("too many"), "{said}");
    assert!(
        ended(&mut waiting[0].pipe, Duration::from_millis(200))
            .await
            .is_none(),
        "a waiting stream was closed"
    );
    // Their data streams complete the four pairs: four echoes run.
    let mut echoes = Vec::new();
    for request in 0..4 {
        let mut data = session.open(headers("data", request, 7)).await.unwrap();
        data.pipe.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        data.pipe.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"ping");
        echoes.push(data);
    }
    // A fifth forwarded connection while four run is refused.
    let mut error = session.open(headers("error", 5, 7)).await.unwrap();
    let _data = session.open(headers("data", 5, 7)).await.unwrap();
    let said = ended(&mut error.pipe, Duration::from_secs(5))
        .await
        .expect("a connection beyond the bound was not refused");
    assert!(said.contains("too many"), "{said}");
}

#[tokio::test]
async fn a_websocket_port_forward_names_a_bounded_number_of_ports() {
    let s = start(ServerConfig {
        max_port_forward_streams: 4,
        ..Default::default()
    })
    .await;
    let url = s
        .url(Request::PortForward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            ports: Vec::new(),
        }))
        .unwrap();
    let path = url.split_once("://").unwrap().1.split_once('/').unwrap().1;
    let ports: Vec<String> = (1..=5).map(|p| format!("port={p}")).collect();
    let mut tcp = TcpStream::connect(s.local_addr()).await.unwrap();
    let request = format!(
        "GET /{path}?{} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: portforward.k8s.io\r\n\r\n",
        ports.join("&")
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
}
