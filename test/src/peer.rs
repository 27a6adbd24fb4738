//! A loopback HTTP/1.1 peer that answers through a handler and records the
//! Authorization header of each request: a stand-in registry, mirror or
//! token service whose job is to show which credentials reached it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

/// Largest request head read.
const MAX_HEAD: u64 = 64 << 10;
/// How long a connection may stay silent.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the peer saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// GET, POST...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
}

/// What the peer answers.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// A status with no body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// The peer; stopped on drop.
pub struct HttpPeer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpPeer {
    /// Listens on a free loopback port; each connection is served on its
    /// own thread (a handler may sleep), one request per connection.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (handler, seen) = (handler.clone(), seen.clone());
                    std::thread::spawn(move || serve(stream, &*handler, &seen));
                }
            })
        };
        Ok(Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The Authorization values received, in arrival order.
    pub fn authorizations(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|r| r.authorization)
            .collect()
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Request>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half.take(MAX_HEAD));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let request = Request {
        method,
        path,
        authorization,
    };
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(request.clone());
    let response = handler(&request);
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: 0\r\nConnection: close\r\n",
        response.status
    );
    for (name, value) in &response.headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
}
