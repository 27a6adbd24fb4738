//! A pod's network counters, read from the host side of its link: the
//! daemon never enters the pod's namespace, and the veth's peer sees every
//! byte the pod's interface sends or receives, the other way round.

use std::path::Path;

use serde_json::Value;

/// Cumulative counters of a pod interface, from the pod's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// The interface's name inside the pod (e.g. `eth0`).
    pub name: String,
    /// Bytes the pod received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes the pod sent.
    pub tx_bytes: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// The counters of the pod interface a CNI ADD `result` made, read from its
/// host-side peer under `sys_class_net` (`/sys/class/net`): the result's
/// host interface that is neither in the sandbox nor a bridge. None when the
/// result names no such interface (e.g. macvlan) or it is gone.
pub fn pod_interface(result: &Value, sys_class_net: &Path) -> Option<InterfaceCounters> {
    let interfaces = result["interfaces"].as_array()?;
    let in_pod = interfaces
        .iter()
        .find(|i| i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))?;
    let name = in_pod["name"].as_str()?.to_string();
    let host = interfaces
        .iter()
        .filter(|i| i["sandbox"].as_str().is_none_or(str::is_empty))
        .filter_map(|i| i["name"].as_str())
        .filter(|n| !n.is_empty() && !n.contains('/') && !n.starts_with('.'))
        .map(|n| sys_class_net.join(n))
        .find(|dir| dir.join("statistics").is_dir() && !dir.join("bridge").exists())?;
    let read = |counter: &str| -> u64 {
        std::fs::read_to_string(host.join("statistics").join(counter))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    Some(InterfaceCounters {
        name,
        rx_bytes: read("tx_bytes"),
        rx_errors: read("tx_errors"),
        tx_bytes: read("rx_bytes"),
        tx_errors: read("rx_errors"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_come_from_the_host_peer_swapped() {
        let tmp = std::env::temp_dir().join(format!("crio-netstats-{}", std::process::id()));
        let stats = |dev: &str, values: [(&str, u64); 4]| {
            let dir = tmp.join(dev).join("statistics");
            std::fs::create_dir_all(&dir).unwrap();
            for (f, v) in values {
                std::fs::write(dir.join(f), format!("{v}\n")).unwrap();
            }
        };
        let counters = [
            ("rx_bytes", 100),
            ("tx_bytes", 2000),
            ("rx_errors", 1),
            ("tx_errors", 3),
        ];
        stats("cni0", counters);
        std::fs::create_dir_all(tmp.join("cni0/bridge")).unwrap();
        stats("veth1", counters);
        let result = json!({"interfaces": [
            {"name": "cni0", "mac": "aa"},
            {"name": "veth1", "mac": "bb"},
            {"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"}
        ]});
        assert_eq!(
            pod_interface(&result, &tmp),
            Some(InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 2000,
                rx_errors: 3,
                tx_bytes: 100,
                tx_errors: 1,
            })
        );
        // A hostile name does not leave the directory; no host peer, no stats.
        let escape = json!({"interfaces": [
            {"name": "../veth1"},
            {"name": "eth0", "sandbox": "/run/netns/x"}
        ]});
        assert_eq!(pod_interface(&escape, &tmp), None);
        assert_eq!(pod_interface(&json!({}), &tmp), None);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
