//! The CRI log file, written by the shim: `<RFC3339Nano> <stream> <P|F> <text>`
//! lines; a line longer than the buffer is written in P(artial) pieces, a
//! final line without a newline as P.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use std::io::Write;
use std::sync::Mutex;

/// Longest piece written as one log line.
pub const MAX_LINE: usize = 16 * 1024;

/// RFC 3339 with nanoseconds, UTC.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// A container's log file, shared by its stdout and stderr copiers.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// Lines are appended with plain writes: a short write to a local file
/// costs less than a thread pool to do it in the background.
fn open_append(path: &PathBuf) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl LogFile {
    /// Opens (appending, creating) `path`.
    pub async fn open(path: PathBuf) -> std::io::Result<Arc<Self>> {
        let file = open_append(&path)?;
        Ok(Arc::new(Self {
            path,
            file: Mutex::new(file),
        }))
    }

    /// Opens the file at its path again (after the kubelet rotated it).
    pub async fn reopen(&self) -> std::io::Result<()> {
        let file = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        Ok(())
    }

    /// Writes the complete lines of `pending` (and pieces of lines longer
    /// than `MAX_LINE`), leaving the unfinished rest in it.
    pub async fn write_lines(&self, stream: &str, pending: &mut Vec<u8>) {
        loop {
            let newline = pending.iter().position(|b| *b == b'\n');
            let line_len = newline.unwrap_or(pending.len());
            if line_len >= MAX_LINE {
                self.write_line(stream, 'P', &pending[..MAX_LINE]).await;
                pending.drain(..MAX_LINE);
            } else if let Some(i) = newline {
                let end = if i > 0 && pending[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                self.write_line(stream, 'F', &pending[..end]).await;
                pending.drain(..=i);
            } else {
                break;
            }
        }
    }

    /// Writes one line tagged `tag` (F: full, P: partial).
    pub async fn write_line(&self, stream: &str, tag: char, text: &[u8]) {
        let mut line = format!("{} {stream} {tag} ", timestamp(SystemTime::now())).into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = file.write_all(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(timestamp(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[tokio::test]
    async fn lines_partials_and_streams() {
        let tmp = std::env::temp_dir().join(format!("crio-shim-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let log = LogFile::open(tmp.clone()).await.unwrap();
        let long = vec![b'x'; MAX_LINE + 5];
        let mut input = b"one\ntwo\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\ntail");
        log.write_lines("stdout", &mut input).await;
        log.write_line("stdout", 'P', &input).await;
        log.write_lines("stderr", &mut b"err\r\n".to_vec()).await;
        std::fs::rename(&tmp, tmp.with_extension("old")).unwrap();
        log.reopen().await.unwrap();
        log.write_lines("stdout", &mut b"after\n".to_vec()).await;
        let reopened = std::fs::read_to_string(&tmp).unwrap();
        assert!(reopened.ends_with(" stdout F after\n"), "{reopened}");
        let _ = std::fs::remove_file(&tmp);
        std::fs::rename(tmp.with_extension("old"), &tmp).unwrap();
        let text = std::fs::read_to_string(&tmp).unwrap();
        let _ = std::fs::remove_file(&tmp);
        let lines: Vec<(&str, &str, &str)> = text
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, ' ');
                let _ts = p.next().unwrap();
                (p.next().unwrap(), p.next().unwrap(), p.next().unwrap_or(""))
            })
            .collect();
        assert_eq!(lines[0], ("stdout", "F", "one"));
        assert_eq!(lines[1], ("stdout", "F", "two"));
        assert_eq!(
            (lines[2].0, lines[2].1, lines[2].2.len()),
            ("stdout", "P", MAX_LINE)
        );
        assert_eq!(lines[3], ("stdout", "F", "xxxxx"));
        assert_eq!(lines[4], ("stdout", "P", "tail"));
        assert_eq!(lines[5], ("stderr", "F", "err"));
    }
}
