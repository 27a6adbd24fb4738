//! A SPDY session: streams both ways over one connection, a task writing
//! frames and one reading them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::{CHUNK, Closed, Deflater, Frame, Headers, Inflater, PIPE, encode, read_frame};

/// A stream of a session: its headers and a pipe for its bytes (end of
/// file when the peer closes its half; shutting down the pipe closes ours).
pub struct Stream {
    /// Stream ID.
    pub id: u32,
    /// The headers it was opened with.
    pub headers: Headers,
    /// Its bytes.
    pub pipe: DuplexStream,
    /// Fires once our half is closed on the wire (after the pipe's end).
    pub sent: tokio::sync::oneshot::Receiver<()>,
}

impl Stream {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where the peer's data for each open stream goes (None: end of file).
type Inputs = Arc<Mutex<HashMap<u32, mpsc::Sender<Option<Vec<u8>>>>>>;

/// When a frame last went either way (window updates aside).
#[derive(Clone)]
struct Activity {
    born: Instant,
    /// Milliseconds after `born`.
    last: Arc<AtomicU64>,
}

impl Activity {
    fn touch(&self, frame: &Frame) {
        if !matches!(frame, Frame::WindowUpdate { .. }) {
            let ms = self.born.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
    }

    fn idle_for(&self) -> Duration {
        let last = self.last.load(Ordering::Relaxed);
        self.born
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

/// What the session and its reading task share; the reading task keeps
/// them (and so the writing task) alive until the connection ends, even
/// once the session is dropped.
#[derive(Clone)]
struct Wires {
    out: mpsc::Sender<Frame>,
    inputs: Inputs,
    activity: Activity,
}

impl Wires {
    /// Hands the peer's data for stream `id` to its pipe and grants the
    /// window back (the stream's and the connection's).
    async fn deliver(&self, id: u32, fin: bool, data: Vec<u8>) {
        let tx = self.inputs.lock().get(&id).cloned();
        let n = data.len() as u32;
        if let Some(tx) = tx {
            if !data.is_empty() {
                let _ = tx.send(Some(data)).await;
            }
            if fin {
                let _ = tx.send(None).await;
            }
        }
        if n > 0 {
            for id in [id, 0] {
                let _ = self.out.send(Frame::WindowUpdate { id, delta: n }).await;
            }
        }
    }
}

/// A SPDY session over a connection.
pub struct Session {
    wires: Wires,
    next_id: Mutex<u32>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Stream>>,
}

impl Session {
    /// Runs a session on `io`; `server` picks even stream IDs for its own
    /// streams, a client odd ones.
    pub fn start<S>(io: S, server: bool) -> Arc<Self>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel::<Frame>(256);
        let activity = Activity {
            born: Instant::now(),
            last: Arc::default(),
        };
        tokio::spawn(write_frames(wr, out_rx, activity.clone()));
        let wires = Wires {
            out,
            inputs: Arc::default(),
            activity,
        };
        let (incoming_tx, incoming_rx) = mpsc::channel(64);
        let session = Arc::new(Self {
            wires: wires.clone(),
            next_id: Mutex::new(if server { 2 } else { 1 }),
            incoming: tokio::sync::Mutex::new(incoming_rx),
        });
        tokio::spawn(read_frames(
            rd,
            wires,
            Arc::downgrade(&session),
            incoming_tx,
        ));
        session
    }

    /// Wires stream `id` to a pipe.
    fn attach(&self, id: u32, headers: Headers, peer_done: bool) -> Stream {
        let (user, ours) = tokio::io::duplex(PIPE);
        let (mut from_user, mut to_user) = tokio::io::split(ours);
        let (tx, mut rx) = mpsc::channel::<Option<Vec<u8>>>(8);
        if peer_done {
            let _ = tx.try_send(None);
        }
        self.wires.inputs.lock().insert(id, tx);
        tokio::spawn(async move {
            while let Some(Some(data)) = rx.recv().await {
                if to_user.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = to_user.shutdown().await;
        });
        let out = self.wires.out.clone();
        let (sent_tx, sent) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match from_user.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let data = buf[..n].to_vec();
                        if out
                            .send(Frame::Data {
                                id,
                                fin: false,
                                data,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = out
                .send(Frame::Data {
                    id,
                    fin: true,
                    data: Vec::new(),
                })
                .await;
            let _ = sent_tx.send(());
        });
        Stream {
            id,
            headers,
            pipe: user,
            sent,
        }
    }

    /// Opens a stream with `headers`.
    pub async fn open(&self, headers: Headers) -> Result<Stream, Closed> {
        let id = {
            let mut next = self.next_id.lock();
            let id = *next;
            *next += 2;
            id
        };
        let stream = self.attach(id, headers.clone(), false);
        self.wires
            .out
            .send(Frame::SynStream {
                id,
                fin: false,
                headers,
            })
            .await
            .map_err(|_| Closed)?;
        Ok(stream)
    }

    /// The next stream the peer opens; None once the connection is gone.
    pub async fn accept(&self) -> Option<Stream> {
        self.incoming.lock().await.recv().await
    }

    /// How long no frame went either way (window updates aside).
    pub fn idle_for(&self) -> Duration {
        self.wires.activity.idle_for()
    }

    /// Ends the session: GOAWAY, then the connection closes.
    pub async fn close(&self) {
        let _ = self
            .wires
            .out
            .send(Frame::GoAway {
                last_id: 0,
                status: 0,
            })
            .await;
    }
}

/// Writes the session's frames until GOAWAY or a write fails.
async fn write_frames(
    mut wr: impl AsyncWrite + Unpin,
    mut frames: mpsc::Receiver<Frame>,
    activity: Activity,
) {
    let mut deflater = Deflater::default();
    while let Some(f) = frames.recv().await {
        activity.touch(&f);
        let bytes = encode(&f, &mut deflater);
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        if matches!(f, Frame::GoAway { .. }) {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Reads the peer's frames until GOAWAY or the end of the connection; the
/// streams the peer opens go to `incoming` while the session lives. Then
/// every stream sees end of file.
async fn read_frames(
    mut rd: impl AsyncRead + Unpin,
    wires: Wires,
    session: Weak<Session>,
    incoming: mpsc::Sender<Stream>,
) {
    let mut inflater = Inflater::default();
    while let Ok(Some(frame)) = read_frame(&mut rd, &mut inflater).await {
        wires.activity.touch(&frame);
        match frame {
            Frame::SynStream { id, fin, headers } => {
                let Some(s) = session.upgrade() else { break };
                let _ = wires
                    .out
                    .send(Frame::SynReply {
                        id,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await;
                let stream = s.attach(id, headers, fin);
                if incoming.send(stream).await.is_err() {
                    break;
                }
            }
            Frame::Data { id, fin, data } => wires.deliver(id, fin, data).await,
            Frame::RstStream { id, .. } => {
                let tx = wires.inputs.lock().remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(None).await;
                }
            }
            Frame::Ping(id) => {
                let _ = wires.out.send(Frame::Ping(id)).await;
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    // The connection is gone: every stream sees end of file.
    let all: Vec<_> = wires.inputs.lock().drain().collect();
    for (_, tx) in all {
        let _ = tx.send(None).await;
    }
}
