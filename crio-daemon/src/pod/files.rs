//! The files a pod's containers see: /etc/hostname, /etc/resolv.conf,
//! /etc/hosts.

use crio_api::cri::DnsConfig;

/// resolv.conf from the pod's DNS configuration, or the host's file when the
/// configuration names nothing.
pub fn resolv_conf(dns: Option<&DnsConfig>, host_file: &str) -> String {
    let Some(dns) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return host_file.to_string();
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out += &format!("search {}\n", dns.searches.join(" "));
    }
    for server in &dns.servers {
        out += &format!("nameserver {server}\n");
    }
    if !dns.options.is_empty() {
        out += &format!("options {}\n", dns.options.join(" "));
    }
    out
}

/// /etc/hosts with localhost and the pod's own name and addresses.
pub fn hosts(hostname: &str, ips: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for ip in ips {
        out += &format!("{ip}\t{hostname}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "1.1.1.1".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns), "host"),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 1.1.1.1\noptions ndots:5\n"
        );
        assert_eq!(
            resolv_conf(None, "nameserver 9.9.9.9\n"),
            "nameserver 9.9.9.9\n"
        );
        assert_eq!(resolv_conf(Some(&DnsConfig::default()), "h\n"), "h\n");
    }

    #[test]
    fn hosts_name_the_pod() {
        let h = hosts("web-0", &["10.88.0.5".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.5\tweb-0\n"));
    }
}
