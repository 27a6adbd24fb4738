//! A CNI plugin's result on stdout, and the pod IPs taken from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(result) = serde_json::from_slice::<serde_json::Value>(data) {
        for ip in crio_network::cni::result_ips(&result) {
            assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip:?}");
        }
    }
});
