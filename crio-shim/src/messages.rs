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
        let line = serde_json::json!({
            "timestamp": time,
            "level": "WARN",
            "fields": { "message": message },
            "target": TARGET,
        });
        format!("{line}\n")
    } else {
        format!("{time}  WARN {TARGET}: {message}\n")
    }
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
            serde_json::from_str(format_line(true, t, "a \"b\"").trim()).unwrap();
        assert_eq!(json["fields"]["message"], "a \"b\"");
        assert_eq!(json["level"], "WARN");
        assert_eq!(json["timestamp"], t);
    }
}
