//! SPDY/3.1, as far as the kubelet streaming protocol uses it: the frames,
//! name/value header blocks compressed with zlib and SPDY/3's dictionary,
//! and a session that turns each stream into a byte pipe.
//!
//! Flow control: the session acknowledges what it received with
//! WINDOW_UPDATE frames (stream and connection), and it never lets a peer
//! buffer more than one pipe's worth per stream (a slow reader stalls the
//! peer). It does not hold its own sending to the peer's window: the Go
//! implementation the Kubernetes clients use never sends WINDOW_UPDATE.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Header names and values of a stream.
pub type Headers = Vec<(String, String)>;

mod session;
pub use session::{Session, Stream};

/// Largest frame accepted (the 24-bit length allows 16 MiB).
const MAX_FRAME: usize = 1 << 20;
/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Data sent per DATA frame at most.
const CHUNK: usize = 32 * 1024;
/// The pipe between a stream and its user.
const PIPE: usize = 256 * 1024;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 1;

/// The SPDY/3 header compression dictionary (1423 bytes): length-prefixed
/// header names and values, then common strings.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
            "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
            "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8",
            "charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// A SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A new stream.
    SynStream {
        /// Stream ID.
        id: u32,
        /// The sender closes its half at once.
        fin: bool,
        /// Headers.
        headers: Headers,
    },
    /// The answer to SYN_STREAM.
    SynReply {
        /// Stream ID.
        id: u32,
        /// The sender closes its half at once.
        fin: bool,
        /// Headers.
        headers: Headers,
    },
    /// Abort a stream.
    RstStream {
        /// Stream ID.
        id: u32,
        /// Why.
        status: u32,
    },
    /// Settings (ignored but for the record).
    Settings(Vec<(u32, u32)>),
    /// Ping.
    Ping(u32),
    /// The session ends.
    GoAway {
        /// Last stream the sender handled.
        last_id: u32,
        /// Why.
        status: u32,
    },
    /// More headers.
    Headers {
        /// Stream ID.
        id: u32,
        /// Headers.
        headers: Headers,
    },
    /// More room in a window (stream 0: the connection's).
    WindowUpdate {
        /// Stream ID.
        id: u32,
        /// Bytes.
        delta: u32,
    },
    /// Stream data.
    Data {
        /// Stream ID.
        id: u32,
        /// The sender's half is closed after this.
        fin: bool,
        /// Bytes.
        data: Vec<u8>,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not SPDY/3 or not well-formed.
    #[error("malformed SPDY frame: {0}")]
    Malformed(String),
}

/// A stream could not be opened: the connection is gone.
#[derive(Debug, thiserror::Error)]
#[error("the SPDY connection is closed")]
pub struct Closed;

fn malformed(why: impl Into<String>) -> FrameError {
    FrameError::Malformed(why.into())
}

/// The compression state of one direction of a connection.
pub struct Deflater(Compress);
/// The decompression state of one direction of a connection.
pub struct Inflater(Decompress);

impl Default for Deflater {
    fn default() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        let _ = c.set_dictionary(dictionary());
        Self(c)
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self(Decompress::new(true))
    }
}

impl Deflater {
    fn block(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            for s in [k.to_ascii_lowercase(), v.clone()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.0.total_in();
            let _ = self.0.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.0.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

impl Inflater {
    fn block(&mut self, mut input: &[u8]) -> Result<Headers, FrameError> {
        let mut raw: Vec<u8> = Vec::new();
        while !input.is_empty() {
            raw.reserve(4096);
            if raw.len() > MAX_HEADER_BLOCK {
                return Err(malformed("header block too large"));
            }
            let before = self.0.total_in();
            match self
                .0
                .decompress_vec(input, &mut raw, FlushDecompress::Sync)
            {
                Ok(Status::BufError)
                    if self.0.total_in() == before && raw.len() < raw.capacity() =>
                {
                    return Err(malformed("header block does not decompress"));
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(dictionary())
                        .map_err(|e| malformed(format!("dictionary: {e}")))?;
                }
                Err(e) => return Err(malformed(format!("header block: {e}"))),
            }
            input = &input[(self.0.total_in() - before) as usize..];
        }
        parse_block(&raw)
    }
}

fn parse_block(raw: &[u8]) -> Result<Headers, FrameError> {
    let mut p = raw;
    let take_u32 = |p: &mut &[u8]| -> Result<usize, FrameError> {
        if p.len() < 4 {
            return Err(malformed("truncated header block"));
        }
        let n = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        *p = &p[4..];
        Ok(n)
    };
    let count = take_u32(&mut p)?;
    if count > 1024 {
        return Err(malformed("too many headers"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for s in &mut pair {
            let n = take_u32(&mut p)?;
            if p.len() < n {
                return Err(malformed("truncated header"));
            }
            *s = String::from_utf8_lossy(&p[..n]).into_owned();
            p = &p[n..];
        }
        let [k, v] = pair;
        headers.push((k, v));
    }
    Ok(headers)
}

/// Encodes `frame`.
pub fn encode(frame: &Frame, deflater: &mut Deflater) -> Vec<u8> {
    let control = |kind: u16, flags: u8, body: Vec<u8>| {
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&(0x8003u16).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        out
    };
    let fin = |f: bool| if f { FLAG_FIN } else { 0 };
    match frame {
        Frame::SynStream {
            id,
            fin: f,
            headers,
        } => {
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            body.extend_from_slice(&deflater.block(headers));
            control(SYN_STREAM, fin(*f), body)
        }
        Frame::SynReply {
            id,
            fin: f,
            headers,
        } => {
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&deflater.block(headers));
            control(SYN_REPLY, fin(*f), body)
        }
        Frame::Headers { id, headers } => {
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&deflater.block(headers));
            control(HEADERS, 0, body)
        }
        Frame::RstStream { id, status } => {
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&status.to_be_bytes());
            control(RST_STREAM, 0, body)
        }
        Frame::Settings(entries) => {
            let mut body = (entries.len() as u32).to_be_bytes().to_vec();
            for (id, value) in entries {
                body.extend_from_slice(&(id & 0x00ff_ffff).to_be_bytes());
                body.extend_from_slice(&value.to_be_bytes());
            }
            control(SETTINGS, 0, body)
        }
        Frame::Ping(id) => control(PING, 0, id.to_be_bytes().to_vec()),
        Frame::GoAway { last_id, status } => {
            let mut body = last_id.to_be_bytes().to_vec();
            body.extend_from_slice(&status.to_be_bytes());
            control(GOAWAY, 0, body)
        }
        Frame::WindowUpdate { id, delta } => {
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&delta.to_be_bytes());
            control(WINDOW_UPDATE, 0, body)
        }
        Frame::Data { id, fin: f, data } => {
            let mut out = Vec::with_capacity(8 + data.len());
            out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
            out.push(fin(*f));
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
            out
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, FrameError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| malformed("frame too short"))
}

/// Reads one frame; None at a clean end of the connection. Frames of
/// unknown types are skipped.
pub async fn read_frame(
    r: &mut (impl AsyncRead + Unpin),
    inflater: &mut Inflater,
) -> Result<Option<Frame>, FrameError> {
    loop {
        let mut head = [0u8; 8];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(malformed(format!("frame of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                id,
                fin,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(malformed(format!("SPDY version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let id = || u32_at(&body, 0).map(|v| v & 0x7fff_ffff);
        let frame = match kind {
            SYN_STREAM => Frame::SynStream {
                id: id()?,
                fin,
                headers: inflater.block(
                    body.get(10..)
                        .ok_or_else(|| malformed("short SYN_STREAM"))?,
                )?,
            },
            SYN_REPLY => Frame::SynReply {
                id: id()?,
                fin,
                headers: inflater
                    .block(body.get(4..).ok_or_else(|| malformed("short SYN_REPLY"))?)?,
            },
            HEADERS => Frame::Headers {
                id: id()?,
                headers: inflater
                    .block(body.get(4..).ok_or_else(|| malformed("short HEADERS"))?)?,
            },
            RST_STREAM => Frame::RstStream {
                id: id()?,
                status: u32_at(&body, 4)?,
            },
            SETTINGS => {
                let n = u32_at(&body, 0)? as usize;
                let entries = (0..n.min(64))
                    .map(|i| {
                        Ok((
                            u32_at(&body, 4 + 8 * i)? & 0x00ff_ffff,
                            u32_at(&body, 8 + 8 * i)?,
                        ))
                    })
                    .collect::<Result<_, FrameError>>()?;
                Frame::Settings(entries)
            }
            PING => Frame::Ping(u32_at(&body, 0)?),
            GOAWAY => Frame::GoAway {
                last_id: id()?,
                status: u32_at(&body, 4).unwrap_or(0),
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                id: id()?,
                delta: u32_at(&body, 4)? & 0x7fff_ffff,
            },
            _ => continue,
        };
        return Ok(Some(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options"));
        assert!(d.ends_with(b"enq=0."));
        // The dictionary ID a SPDY/3 peer checks: Adler-32 of the bytes.
        let (mut a, mut b) = (1u32, 0u32);
        for x in d {
            a = (a + u32::from(*x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[tokio::test]
    async fn frames_round_trip_with_a_shared_compression_context() {
        let frames = vec![
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: vec![("streamtype".into(), "stdout".into())],
            },
            Frame::SynStream {
                id: 3,
                fin: true,
                headers: vec![
                    ("streamtype".into(), "error".into()),
                    ("port".into(), "80".into()),
                ],
            },
            Frame::SynReply {
                id: 1,
                fin: false,
                headers: Vec::new(),
            },
            Frame::Data {
                id: 1,
                fin: true,
                data: b"payload".to_vec(),
            },
            Frame::Ping(7),
            Frame::WindowUpdate { id: 0, delta: 100 },
            Frame::RstStream { id: 3, status: 5 },
            Frame::Settings(vec![(7, 65536)]),
            Frame::GoAway {
                last_id: 3,
                status: 0,
            },
        ];
        let mut d = Deflater::default();
        let bytes: Vec<u8> = frames.iter().flat_map(|f| encode(f, &mut d)).collect();
        let mut r = &bytes[..];
        let mut i = Inflater::default();
        for f in &frames {
            assert_eq!(read_frame(&mut r, &mut i).await.unwrap().as_ref(), Some(f));
        }
        assert!(read_frame(&mut r, &mut i).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn hostile_frames_are_refused() {
        let mut i = Inflater::default();
        // Version 2.
        let v2 = [0x80, 0x02, 0, 1, 0, 0, 0, 0];
        assert!(read_frame(&mut &v2[..], &mut i).await.is_err());
        // 16 MiB announced.
        let big = [0x80, 0x03, 0, 1, 0, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &big[..], &mut i).await.is_err());
        // A header block that is not zlib.
        let mut bad = vec![0x80, 0x03, 0, 2, 0, 0, 0, 12, 0, 0, 0, 1];
        bad.extend_from_slice(b"garbage!");
        assert!(
            read_frame(&mut &bad[..], &mut Inflater::default())
                .await
                .is_err()
        );
        // A block claiming more headers than it has.
        assert!(parse_block(&[0, 0, 0, 2, 0, 0, 0, 1, b'a']).is_err());
        assert!(parse_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[tokio::test]
    async fn sessions_carry_streams_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = Session::start(a, false);
        let server = Session::start(b, true);
        let mut s = client
            .open(vec![("streamtype".into(), "data".into())])
            .await
            .unwrap();
        let mut peer = server.accept().await.unwrap();
        assert_eq!(peer.header("StreamType"), Some("data"));
        let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 253) as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            s.pipe.write_all(&sent).await.unwrap();
            s.pipe.shutdown().await.unwrap();
            s
        });
        let mut got = Vec::new();
        peer.pipe.read_to_end(&mut got).await.unwrap();
        assert!(got == body);
        peer.pipe.write_all(b"back").await.unwrap();
        peer.pipe.shutdown().await.unwrap();
        let mut s = writer.await.unwrap();
        let mut back = Vec::new();
        s.pipe.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"back");
    }
}
