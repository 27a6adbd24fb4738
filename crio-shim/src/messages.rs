//! The shim's own messages, on its stderr (the pod's `shim.log`), in the
//! daemon's log format (`CRIO_LOG_FORMAT`): the text line or the JSON
//! object tracing-subscriber writes for the daemon.

use std::io::Write;

/// Writes a warning.
pub fn warn(message: std::fmt::Arguments<'_>) {
    let json = std::env::var(crio_contract::env::LOG_FORMAT).is_ok_and(|f| f == "json");
    let line = format_line(json, &now(), &message.to_string());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn now() -> String {
    crio_contract::time::format_rfc3339(std::time::SystemTime::now())
}

/// One line of the log: `TIME  WARN target: message`, or as JSON.
fn format_line(json: bool, time: &str, message: &str) -> String {
    const TARGET: &str = "containerd_shim_crio_v2";
    if json {
        format!(
            "{{\"timestamp\":{},\"level\":\"WARN\",\"fields\":{{\"message\":{}}},\"target\":\"{TARGET}\"}}\n",
            json_string(time),
            json_string(message)
        )
    } else {
        format!("{time}  WARN {TARGET}: {message}\n")
    }
}

/// `text` as a JSON string. By hand: serde_json's serializer would add to
/// the shim's text, and so to every pod's memory, for a few warnings.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_the_daemon_writes_them() {
        let t = "2026-12-01T00:00:00.000000000Z";
        assert_eq!(
            format_line(false, t, "full"),
            format!("{t}  WARN containerd_shim_crio_v2: full\n")
        );
        let json: serde_json::Value =
            serde_json::from_str(format_line(true, t, "a \"b\"\\\n\u{1}é").trim()).unwrap();
        assert_eq!(json["fields"]["message"], "a \"b\"\\\n\u{1}é");
        assert_eq!(json["level"], "WARN");
        assert_eq!(json["timestamp"], t);
    }
}
