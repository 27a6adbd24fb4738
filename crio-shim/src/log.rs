//! The CRI log file, written by the shim in the contract's line format
//! (`crio_contract::log`); a line longer than the buffer is written in
//! P(artial) pieces, a final line without a newline as P.
//!
//! With a size limit (`log_size_max`), the file never grows past it: as
//! CRI-O's conmon does, a line that would pass the limit first empties the
//! file, and logging goes on in it (conmon writes no note of the cut, nor
//! do we). Pieces are kept short enough that one line always fits.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crio_contract::log::{Stream, Tag, format_line};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, OpenHow, ResolveFlag, fcntl, openat2};
use nix::sys::stat::{Mode, mkdirat};
use parking_lot::Mutex;

/// Longest piece written as one log line.
pub const MAX_LINE: usize = 16 * 1024;

/// More than a line adds to its text: timestamp, stream, tag, spaces and
/// the newline (41 bytes today).
const LINE_OVERHEAD: usize = 64;

/// A container's log file, shared by its stdout and stderr copiers.
#[derive(Debug)]
pub struct LogFile {
    dir: PathBuf,
    below: PathBuf,
    /// The limit on the file's size, if any.
    size_max: Option<u64>,
    out: Mutex<Output>,
}

/// The open file and its size, changed together under one lock.
#[derive(Debug)]
struct Output {
    file: std::fs::File,
    size: u64,
}

impl Output {
    fn new(file: std::fs::File) -> Self {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self { file, size }
    }

    /// Appends `line`, first emptying the file if the line would take it
    /// past `size_max`. The file is emptied through the descriptor held,
    /// so no path is resolved again for it.
    fn append(&mut self, line: &[u8], size_max: Option<u64>) {
        if let Some(max) = size_max
            && self.size.saturating_add(line.len() as u64) > max
        {
            match self.file.set_len(0) {
                Ok(()) => self.size = 0,
                Err(e) => {
                    crate::messages::warn(format_args!("empty the log file at its size limit: {e}"))
                }
            }
        }
        match self.file.write_all(line) {
            Ok(()) => self.size += line.len() as u64,
            // What a failed write left is only known from the file.
            Err(_) => self.size = self.file.metadata().map_or(self.size, |m| m.len()),
        }
    }
}

/// Where the log goes: the log directory, which the kubelet made and the
/// shim trusts, and the path below it, which a pod may have tampered with
/// (a hostPath mount of its log directory lets a container plant symlinks).
/// Without a directory, the file's parent is the directory.
fn split(path: &Path, dir: Option<&Path>) -> io::Result<(PathBuf, PathBuf)> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    let (dir, below) = match dir {
        Some(dir) => (
            dir,
            path.strip_prefix(dir)
                .map_err(|_| invalid("not below the log directory"))?,
        ),
        None => (
            path.parent().ok_or_else(|| invalid("no directory"))?,
            Path::new(path.file_name().ok_or_else(|| invalid("no file name"))?),
        ),
    };
    if below.file_name().is_none()
        || !below
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(invalid("not a plain path below the log directory"));
    }
    Ok((dir.to_path_buf(), below.to_path_buf()))
}

/// Opens `below` inside `dir` for appending, by descriptor: every component
/// is resolved beneath the one before and never through a symlink, missing
/// directories are made (and only those), and the file must be a regular
/// file of its own (no FIFO that would block, no hard link to another
/// file). Blocking: called on tokio's blocking pool.
fn open_append(dir: &Path, below: &Path) -> io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let beneath = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS;
    let refused = |name: &OsStr, e: Errno| {
        let why = match e {
            Errno::ELOOP => "a symlink is in the way".to_string(),
            Errno::EXDEV => "leaves the log directory".to_string(),
            // A FIFO nobody reads (O_NONBLOCK), a device.
            Errno::ENXIO => "not a regular file".to_string(),
            e => e.desc().to_lowercase(),
        };
        io::Error::new(
            io::Error::from(e).kind(),
            format!("{}: {why}", name.to_string_lossy()),
        )
    };
    let mut at: OwnedFd = std::fs::File::open(dir)?.into();
    let mut parts: Vec<&OsStr> = below.iter().collect();
    let name = parts.pop().expect("split gives a file name");
    for part in parts {
        let how = OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(beneath);
        at = match openat2(&at, part, how) {
            Err(Errno::ENOENT) => {
                match mkdirat(&at, part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(refused(part, e)),
                }
                openat2(&at, part, how)
            }
            other => other,
        }
        .map_err(|e| refused(part, e))?;
    }
    let how = OpenHow::new()
        .flags(
            OFlag::O_WRONLY
                | OFlag::O_APPEND
                | OFlag::O_CREAT
                | OFlag::O_CLOEXEC
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK,
        )
        .mode(Mode::from_bits_truncate(0o640))
        .resolve(beneath);
    let file = std::fs::File::from(openat2(&at, name, how).map_err(|e| refused(name, e))?);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file of its own", name.to_string_lossy()),
        ));
    }
    fcntl(&file, FcntlArg::F_SETFL(OFlag::O_APPEND)).map_err(io::Error::from)?;
    Ok(file)
}

/// Runs blocking file work on tokio's blocking pool.
async fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

impl LogFile {
    /// Opens (appending, creating) `path`, which must be below the log
    /// directory `dir` when one is given; the file is kept at or under
    /// `size_max` bytes, if given, from now on and after every reopen.
    pub async fn open(
        path: &Path,
        dir: Option<&Path>,
        size_max: Option<u64>,
    ) -> io::Result<Arc<Self>> {
        let (dir, below) = split(path, dir)?;
        let file = in_background({
            let (dir, below) = (dir.clone(), below.clone());
            move || open_append(&dir, &below)
        })
        .await?;
        Ok(Arc::new(Self {
            dir,
            below,
            size_max,
            out: Mutex::new(Output::new(file)),
        }))
    }

    /// Opens the file at its path again (after the kubelet rotated it),
    /// with the same care as the first open.
    pub async fn reopen(&self) -> io::Result<()> {
        let (dir, below) = (self.dir.clone(), self.below.clone());
        let file = in_background(move || open_append(&dir, &below)).await?;
        *self.out.lock() = Output::new(file);
        Ok(())
    }

    /// Longest text of one line: `MAX_LINE`, less when a line must fit a
    /// small size limit.
    fn max_piece(&self) -> usize {
        let fits = self.size_max.map_or(usize::MAX, |max| {
            usize::try_from(max)
                .unwrap_or(usize::MAX)
                .saturating_sub(LINE_OVERHEAD)
        });
        MAX_LINE.min(fits).max(1)
    }

    /// Writes the complete lines of `pending` (and pieces of lines longer
    /// than the longest piece), leaving the unfinished rest in it.
    pub async fn write_lines(self: &Arc<Self>, stream: Stream, pending: &mut Vec<u8>) {
        let max_piece = self.max_piece();
        let mut lines = Vec::new();
        loop {
            let newline = pending.iter().position(|b| *b == b'\n');
            let line_len = newline.unwrap_or(pending.len());
            if line_len >= max_piece {
                self.pieces(stream, Tag::Partial, &pending[..max_piece], &mut lines);
                pending.drain(..max_piece);
            } else if let Some(i) = newline {
                let end = if i > 0 && pending[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                self.pieces(stream, Tag::Full, &pending[..end], &mut lines);
                pending.drain(..=i);
            } else {
                break;
            }
        }
        self.append(lines).await;
    }

    /// Writes one line tagged `tag` (F: full, P: partial); a text longer
    /// than the longest piece goes first in P pieces.
    pub async fn write_line(self: &Arc<Self>, stream: Stream, tag: Tag, text: &[u8]) {
        let mut lines = Vec::new();
        self.pieces(stream, tag, text, &mut lines);
        self.append(lines).await;
    }

    /// The log lines of `text` tagged `tag`, in pieces of at most the
    /// longest piece (all but the last tagged P).
    fn pieces(&self, stream: Stream, tag: Tag, text: &[u8], lines: &mut Vec<Vec<u8>>) {
        let mut pieces = text.chunks(self.max_piece()).peekable();
        if pieces.peek().is_none() {
            lines.push(format_line(SystemTime::now(), stream, tag, b""));
        }
        while let Some(piece) = pieces.next() {
            let tag = if pieces.peek().is_some() {
                Tag::Partial
            } else {
                tag
            };
            lines.push(format_line(SystemTime::now(), stream, tag, piece));
        }
    }

    /// Appends `lines` in order, off the event loop (a write to a slow disk
    /// must not stall the shim's other containers).
    async fn append(self: &Arc<Self>, lines: Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        let log = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut out = log.out.lock();
            for line in &lines {
                out.append(line, log.size_max);
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_partials_and_streams() {
        let tmp = std::env::temp_dir().join(format!("crio-shim-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let log = LogFile::open(&tmp, None, None).await.unwrap();
        let long = vec![b'x'; MAX_LINE + 5];
        let mut input = b"one\ntwo\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\ntail");
        log.write_lines(Stream::Stdout, &mut input).await;
        log.write_line(Stream::Stdout, Tag::Partial, &input).await;
        log.write_lines(Stream::Stderr, &mut b"err\r\n".to_vec())
            .await;
        std::fs::rename(&tmp, tmp.with_extension("old")).unwrap();
        log.reopen().await.unwrap();
        log.write_lines(Stream::Stdout, &mut b"after\n".to_vec())
            .await;
        let reopened = std::fs::read_to_string(&tmp).unwrap();
        assert!(reopened.ends_with(" stdout F after\n"), "{reopened}");
        let _ = std::fs::remove_file(&tmp);
        std::fs::rename(tmp.with_extension("old"), &tmp).unwrap();
        let text = std::fs::read_to_string(&tmp).unwrap();
        let _ = std::fs::remove_file(&tmp);
        let lines: Vec<(Stream, Tag, &str)> = text
            .lines()
            .map(|l| {
                let l = crio_contract::log::parse_line(l).unwrap();
                (l.stream, l.tag, l.text)
            })
            .collect();
        use {Stream::*, Tag::*};
        assert_eq!(lines[0], (Stdout, Full, "one"));
        assert_eq!(lines[1], (Stdout, Full, "two"));
        assert_eq!(
            (lines[2].0, lines[2].1, lines[2].2.len()),
            (Stdout, Partial, MAX_LINE)
        );
        assert_eq!(lines[3], (Stdout, Full, "xxxxx"));
        assert_eq!(lines[4], (Stdout, Partial, "tail"));
        assert_eq!(lines[5], (Stderr, Full, "err"));
    }

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let (logs, victim) = (tmp.path().join("logs"), tmp.path().join("victim"));
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("file"), "host\n").unwrap();
        (tmp, logs, victim)
    }

    fn victim_untouched(victim: &Path) {
        assert_eq!(
            std::fs::read_to_string(victim.join("file")).unwrap(),
            "host\n"
        );
        assert_eq!(std::fs::read_dir(victim).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn symlinks_below_the_log_directory_are_not_followed() {
        let (_tmp, logs, victim) = tree();
        std::os::unix::fs::symlink(victim.join("file"), logs.join("last.log")).unwrap();
        std::os::unix::fs::symlink(&victim, logs.join("parent")).unwrap();
        std::os::unix::fs::symlink("../victim/file", logs.join("relative.log")).unwrap();
        for path in ["last.log", "parent/file", "parent/new.log", "relative.log"] {
            let err = LogFile::open(&logs.join(path), Some(&logs), None)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("symlink"), "{path}: {err}");
        }
        // Without a log directory, the file's parent is it.
        let err = LogFile::open(&logs.join("last.log"), None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        victim_untouched(&victim);
    }

    #[tokio::test]
    async fn paths_outside_and_special_files_are_refused() {
        let (_tmp, logs, victim) = tree();
        let outside = victim.join("new.log");
        assert!(LogFile::open(&outside, Some(&logs), None).await.is_err());
        let dotdot = logs.join("../victim/new.log");
        assert!(LogFile::open(&dotdot, Some(&logs), None).await.is_err());
        nix::unistd::mkfifo(&logs.join("fifo.log"), Mode::from_bits_truncate(0o600)).unwrap();
        // A FIFO must not block the open (the test would hang).
        let err = LogFile::open(&logs.join("fifo.log"), Some(&logs), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("regular file"), "{err}");
        std::fs::hard_link(victim.join("file"), logs.join("hard.log")).unwrap();
        assert!(
            LogFile::open(&logs.join("hard.log"), Some(&logs), None)
                .await
                .is_err()
        );
        std::fs::remove_file(logs.join("hard.log")).unwrap();
        victim_untouched(&victim);
    }

    #[tokio::test]
    async fn missing_directories_are_made_and_reopen_keeps_the_care() {
        let (_tmp, logs, victim) = tree();
        let path = logs.join("ctr/0.log");
        let log = LogFile::open(&path, Some(&logs.join(".")), None)
            .await
            .unwrap();
        log.write_line(Stream::Stdout, Tag::Full, b"one").await;
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with(" stdout F one\n")
        );
        // The kubelet rotates; a container then plants a symlink in its place.
        std::fs::rename(&path, logs.join("ctr/0.log.1")).unwrap();
        std::os::unix::fs::symlink(victim.join("file"), &path).unwrap();
        let err = log.reopen().await.unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        log.write_line(Stream::Stdout, Tag::Full, b"two").await;
        victim_untouched(&victim);
        std::fs::remove_file(&path).unwrap();
        log.reopen().await.unwrap();
        log.write_line(Stream::Stdout, Tag::Full, b"three").await;
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with(" stdout F three\n")
        );
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Every line of the file is a whole CRI line: (stream, tag, text).
    fn parsed(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let p: Vec<&str> = l.splitn(4, ' ').collect();
                assert_eq!(p.len(), 4, "not a CRI line: {l:?}");
                assert!(p[0].ends_with('Z') && p[0].len() == 30, "{l:?}");
                (p[1].into(), p[2].into(), p[3].into())
            })
            .collect()
    }

    #[tokio::test]
    async fn the_size_limit_empties_the_file_and_logging_goes_on() {
        const MAX: u64 = 8192;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogFile::open(&path, None, Some(MAX)).await.unwrap();
        let mut largest = 0;
        for i in 0..500 {
            let mut line = format!("line {i} {}\n", "y".repeat(90)).into_bytes();
            log.write_lines(Stream::Stdout, &mut line).await;
            largest = largest.max(size(&path));
        }
        assert!(largest <= MAX, "the log reached {largest} bytes");
        // Emptied and refilled: the last line is there, the first is gone.
        let lines = parsed(&path);
        assert!(lines.last().unwrap().2.starts_with("line 499 "));
        assert!(!lines.iter().any(|l| l.2.starts_with("line 0 ")));
        assert!(size(&path) > MAX / 2, "the file starts over only when full");

        // A line far longer than the limit goes in pieces that each fit.
        let mut long = vec![b'z'; 100_000];
        log.write_lines(Stream::Stderr, &mut long).await;
        assert!(size(&path) <= MAX);
        log.write_line(Stream::Stderr, Tag::Partial, &long).await;
        assert!(size(&path) <= MAX);
        for (stream, tag, text) in parsed(&path) {
            assert_eq!((stream.as_str(), tag.as_str()), ("stderr", "P"));
            assert!(text.len() as u64 <= MAX - 41, "{}", text.len());
        }
    }

    #[tokio::test]
    async fn the_limit_holds_for_a_file_that_was_already_large_and_after_reopen() {
        const MAX: u64 = 8192;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(&path, vec![b'o'; 10_000]).unwrap();
        let log = LogFile::open(&path, None, Some(MAX)).await.unwrap();
        log.write_line(Stream::Stdout, Tag::Full, b"first").await;
        assert_eq!(parsed(&path).len(), 1, "the oversized file was not emptied");

        // Rotated by the kubelet: the old file is left alone, the new one
        // is held to the limit too.
        let rotated = dir.path().join("c.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen().await.unwrap();
        let before = size(&rotated);
        for i in 0..300 {
            log.write_line(
                Stream::Stdout,
                Tag::Full,
                format!("after {i} {}", "q".repeat(60)).as_bytes(),
            )
            .await;
            assert!(size(&path) <= MAX);
        }
        assert_eq!(size(&rotated), before);
        assert!(parsed(&path).last().unwrap().2.starts_with("after 299 "));
    }

    #[tokio::test]
    async fn without_a_limit_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = LogFile::open(&path, None, None).await.unwrap();
        for i in 0..300 {
            log.write_line(
                Stream::Stdout,
                Tag::Full,
                format!("n {i} {}", "w".repeat(60)).as_bytes(),
            )
            .await;
        }
        assert_eq!(parsed(&path).len(), 300);
    }
}
