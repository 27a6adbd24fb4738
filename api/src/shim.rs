//! Talking to a shim v2 binary.

/// The address in a shim's `start` reply: a plain address, or the JSON
/// bootstrap form `{"address": …, "protocol": "ttrpc", "version": 3}`.
pub fn start_address(reply: &str) -> String {
    let reply = reply.trim();
    serde_json::from_str::<serde_json::Value>(reply)
        .ok()
        .and_then(|v| v["address"].as_str().map(str::to_string))
        .unwrap_or_else(|| reply.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_replies() {
        assert_eq!(start_address("unix:///run/x.sock\n"), "unix:///run/x.sock");
        assert_eq!(
            start_address(r#"{"address":"unix:///run/y.sock","protocol":"ttrpc","version":3}"#),
            "unix:///run/y.sock"
        );
    }
}
