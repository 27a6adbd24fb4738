//! The accept loop when accepting fails (EMFILE): it backs off instead of
//! spinning, and serves again once descriptors are free. Alone in its test
//! binary: it lowers the process's descriptor limit.

use std::sync::Arc;
use std::time::Duration;

use crio_streaming::{
    AttachRequest, Backend, BackendError, Connection, ExecRequest, Server, ServerConfig, StreamIo,
};
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Nothing;

#[async_trait::async_trait]
impl Backend for Nothing {
    async fn exec(&self, _req: &ExecRequest, _io: StreamIo) -> Result<i32, BackendError> {
        Err("no".into())
    }
    async fn attach(&self, _req: &AttachRequest, _io: StreamIo) -> Result<(), BackendError> {
        Err("no".into())
    }
    async fn port_forward(
        &self,
        _pod: &str,
        _port: u16,
        _conn: Box<dyn Connection>,
    ) -> Result<(), BackendError> {
        Err("no".into())
    }
}

/// CPU time this process used so far (user and system).
fn cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    t(usage.user_time()) + t(usage.system_time())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_back_off_and_the_server_recovers() {
    let server = Server::start(ServerConfig::default(), Arc::new(Nothing))
        .await
        .unwrap();
    let addr = server.local_addr();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 256.min(soft), hard).unwrap();
    // Take every descriptor but one; the client's socket takes that one, so
    // the server's accept fails with EMFILE while the connection waits.
    let mut hoard = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hoard.push(f);
    }
    hoard.pop();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let before = cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu() - before;
    // Give descriptors back (and the limit) before asserting.
    hoard.clear();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(
        spent < Duration::from_millis(150),
        "the accept loop spun on EMFILE: {spent:?} of CPU in 1 s"
    );
    // The waiting connection is served once descriptors are free.
    client.set_nonblocking(true).unwrap();
    let mut client = tokio::net::TcpStream::from_std(client).unwrap();
    client
        .write_all(b"GET /exec/unknown HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut head))
        .await
        .expect("not served after descriptors were freed")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
}
