//! The CRI log line, written by the shim and read by crioctl:
//! `<RFC 3339 time> <stdout|stderr> <P|F> <text>\n`, P for a partial
//! piece of a longer line, F for the full line or its last piece.

use std::time::SystemTime;

use crate::time::format_rfc3339;

/// The stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and a terminal's output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// Its name in a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Whether a line is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A piece of a line that goes on in the next line of the stream.
    Partial,
    /// A line, or the last piece of one.
    Full,
}

impl Tag {
    /// Its letter in a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partial => "P",
            Self::Full => "F",
        }
    }
}

/// One parsed log line (borrowing the file's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The time, as written (RFC 3339).
    pub time: &'a str,
    /// The stream.
    pub stream: Stream,
    /// Partial or full.
    pub tag: Tag,
    /// The text, without the newline.
    pub text: &'a str,
}

/// The log line of `text` (which holds no newline) written at `time`.
pub fn format_line(time: SystemTime, stream: Stream, tag: Tag, text: &[u8]) -> Vec<u8> {
    let head = format_rfc3339(time);
    let (stream, tag) = (stream.as_str(), tag.as_str());
    let mut line = Vec::with_capacity(head.len() + stream.len() + text.len() + 5);
    for part in [
        head.as_bytes(),
        b" ",
        stream.as_bytes(),
        b" ",
        tag.as_bytes(),
        b" ",
    ] {
        line.extend_from_slice(part);
    }
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

/// The parts of one line of a log file (without its newline); None for a
/// line that is not a CRI log line.
pub fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let tag = match parts.next()? {
        "P" => Tag::Partial,
        "F" => Tag::Full,
        _ => return None,
    };
    Some(LogLine {
        time,
        stream,
        tag,
        text: parts.next().unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn written_lines_parse_back() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        for (stream, tag, text) in [
            (Stream::Stdout, Tag::Full, "hello world"),
            (Stream::Stderr, Tag::Partial, "  two  spaces "),
            (Stream::Stdout, Tag::Full, ""),
        ] {
            let line = format_line(t, stream, tag, text.as_bytes());
            let line = String::from_utf8(line).unwrap();
            let line = line.strip_suffix('\n').unwrap();
            let parsed = parse_line(line).unwrap();
            assert_eq!(parsed.time, "2023-11-14T22:13:20.123456789Z");
            assert_eq!(parse_rfc3339(parsed.time), Some(1_700_000_000_123_456_789));
            assert_eq!(
                (parsed.stream, parsed.tag, parsed.text),
                (stream, tag, text)
            );
        }
        assert_eq!(
            format_line(UNIX_EPOCH, Stream::Stdout, Tag::Full, b"x"),
            b"1970-01-01T00:00:00.000000000Z stdout F x\n"
        );
    }

    #[test]
    fn other_lines_are_refused_or_lenient_where_harmless() {
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("t stdout"), None);
        assert_eq!(parse_line("t stdin F x"), None);
        assert_eq!(parse_line("t stdout X x"), None);
        // No text at all (a writer that trimmed the trailing space).
        assert_eq!(parse_line("t stderr F").unwrap().text, "");
    }
}
