//! A pod's network through CNI: ADD while the pod is made, CHECK after a
//! restart, DEL when it stops; the runtime config (port mappings, pod
//! CIDRs, bandwidth) each call passes to the plugins.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crio_api::cri::{PortMapping, Protocol};
use crio_network::cni::{self, Attachment, Plugins};
use crio_network::netns::{self, Kind};
use serde_json::{Value, json};

use super::{PodRecord, PodState, Pods};
use crate::error::{Error, Result};

impl Pods {
    /// UpdateRuntimeConfig: the node's pod CIDR(s), comma-separated, handed
    /// to plugins that take the `ipRanges` capability; "" clears it.
    pub fn set_pod_cidr(&self, cidrs: &str) -> Result<()> {
        let mut parsed = Vec::new();
        for cidr in cidrs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let valid = cidr.split_once('/').is_some_and(|(ip, len)| {
                let max = if ip.contains(':') { 128 } else { 32 };
                ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= max)
            });
            if !valid {
                return Err(Error::field(
                    "runtime_config.network_config.pod_cidr",
                    format!("{cidr:?} is not a CIDR"),
                ));
            }
            parsed.push(cidr.to_string());
        }
        tracing::info!(pod_cidr = ?parsed, "pod CIDR updated");
        *self.pod_cidrs.lock() = parsed;
        Ok(())
    }

    /// CNI ADD on the default network; the result goes in the record (for
    /// the rollback's DEL and the pod's IPs).
    pub(super) async fn add_network(&self, record: &mut PodRecord) -> Result<()> {
        let net = &self.config.network;
        let conf = crio_network::load_network(
            &net.network_dir,
            &net.cni_default_network,
            &net.plugin_dirs,
        )
        .map_err(|e| Error::Precondition(format!("pod network: {e}")))?;
        let attachment = self.attachment(record);
        let result = cni::add(&conf, &attachment, &self.plugins())
            .await
            .map_err(|e| Error::Network(Arc::new(e)))?;
        record.ips = cni::result_ips(&result);
        record.network = Some((conf.name.clone(), result));
        Ok(())
    }

    /// CNI CHECK of every ready pod's network, after a start: a pod whose
    /// interface or address went missing while the daemon was down is
    /// reported (the plugin's error, naming the pod) instead of failing later.
    pub async fn check_networks(&self) {
        let net = &self.config.network;
        for record in self.list() {
            let Some((name, result)) = record
                .network
                .as_ref()
                .filter(|_| record.state == PodState::Ready)
            else {
                continue;
            };
            let Ok(conf) = crio_network::load_network(&net.network_dir, name, &net.plugin_dirs)
            else {
                tracing::warn!(pod = %record.id, "network {name:?} of the pod is gone: not checked");
                continue;
            };
            match cni::check(&conf, &self.attachment(&record), result, &self.plugins()).await {
                Ok(()) => tracing::debug!(pod = %record.id, "CNI CHECK passed"),
                Err(e) => tracing::warn!(pod = %record.id, "pod network broken (CNI CHECK): {e}"),
            }
        }
    }

    /// CNI DEL on the default network without a cached result (the ADD may
    /// have run to its end while the daemon was being killed).
    pub(super) async fn del_unrecorded_network(&self, record: &PodRecord) {
        let net = &self.config.network;
        if let Ok(conf) =
            crio_network::load_network(&net.network_dir, &net.cni_default_network, &net.plugin_dirs)
            && let Err(e) = cni::del(&conf, &self.attachment(record), None, &self.plugins()).await
        {
            tracing::warn!(pod = %record.id, "CNI DEL: {e}");
        }
    }

    /// CNI DEL of the network the pod joined, with its cached result.
    pub(super) async fn stop_network(&self, record: &PodRecord) {
        let Some((name, result)) = &record.network else {
            return;
        };
        let net = &self.config.network;
        // The network the pod joined, even if the default changed since.
        let conf = crio_network::load_network(&net.network_dir, name, &net.plugin_dirs);
        match conf {
            Ok(conf) => {
                if let Err(e) = cni::del(
                    &conf,
                    &self.attachment(record),
                    Some(result),
                    &self.plugins(),
                )
                .await
                {
                    tracing::warn!(pod = %record.id, "CNI DEL: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(pod = %record.id, "CNI DEL skipped, network {name:?} gone: {e}")
            }
        }
    }

    /// The configured plugin directories and per-plugin deadline.
    fn plugins(&self) -> Plugins<'_> {
        let net = &self.config.network;
        Plugins {
            dirs: &net.plugin_dirs,
            // Validated at start-up; the default's value otherwise.
            timeout: crio_config::parse_duration(&net.plugin_timeout)
                .unwrap_or(Duration::from_secs(120)),
        }
    }

    fn attachment(&self, record: &PodRecord) -> Attachment {
        let md = record.metadata();
        let mut capabilities = BTreeMap::new();
        let ports: Vec<Value> = record
            .config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(port_mapping)
            .collect();
        if !ports.is_empty() {
            capabilities.insert("portMappings".to_string(), Value::Array(ports));
        }
        let cidrs = self.pod_cidrs.lock().clone();
        if !cidrs.is_empty() {
            let ranges: Vec<Value> = cidrs.iter().map(|c| json!([{ "subnet": c }])).collect();
            capabilities.insert("ipRanges".to_string(), Value::Array(ranges));
        }
        let bandwidth = bandwidth(&record.config.annotations);
        if let Some(b) = bandwidth {
            capabilities.insert("bandwidth".to_string(), b);
        }
        Attachment {
            container_id: record.id.to_string(),
            netns: netns::pin_path(&self.config.runtime.namespaces_dir, Kind::Net, &record.id),
            ifname: "eth0".into(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), md.namespace.clone()),
                ("K8S_POD_NAME".into(), md.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), record.id.to_string()),
                ("K8S_POD_UID".into(), md.uid.clone()),
            ],
            capabilities,
        }
    }
}

/// A CRI port mapping in the portmap plugin's runtime-config form.
fn port_mapping(p: &PortMapping) -> Value {
    let protocol = match Protocol::try_from(p.protocol) {
        Ok(Protocol::Udp) => "udp",
        Ok(Protocol::Sctp) => "sctp",
        _ => "tcp",
    };
    let mut m =
        json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": protocol});
    if !p.host_ip.is_empty() {
        m["hostIP"] = json!(p.host_ip);
    }
    m
}

/// The bandwidth plugin's runtime config from the kubernetes.io bandwidth
/// annotations (`10M`, `1G`… in bits per second).
fn bandwidth(annotations: &HashMap<String, String>) -> Option<Value> {
    let rate = |key: &str| -> Option<u64> {
        let text = annotations.get(key)?.trim();
        let (number, unit) = text.split_at(
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len()),
        );
        let n: u64 = number.parse().ok()?;
        let factor: u64 = match unit {
            "" => 1,
            "k" | "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            _ => return None,
        };
        n.checked_mul(factor)
    };
    let ingress = rate("kubernetes.io/ingress-bandwidth");
    let egress = rate("kubernetes.io/egress-bandwidth");
    if ingress.is_none() && egress.is_none() {
        return None;
    }
    let mut b = serde_json::Map::new();
    if let Some(i) = ingress {
        b.insert("ingressRate".into(), json!(i));
        b.insert("ingressBurst".into(), json!(i32::MAX));
    }
    if let Some(e) = egress {
        b.insert("egressRate".into(), json!(e));
        b.insert("egressBurst".into(), json!(i32::MAX));
    }
    Some(Value::Object(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_bandwidth() {
        let m = port_mapping(&PortMapping {
            protocol: Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        });
        assert_eq!(
            m,
            json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"})
        );
        let mut ann = HashMap::new();
        assert!(bandwidth(&ann).is_none());
        ann.insert(
            "kubernetes.io/ingress-bandwidth".to_string(),
            "10M".to_string(),
        );
        assert_eq!(bandwidth(&ann).unwrap()["ingressRate"], 10_000_000);
        ann.insert(
            "kubernetes.io/egress-bandwidth".to_string(),
            "bogus".to_string(),
        );
        assert!(bandwidth(&ann).unwrap().get("egressRate").is_none());
    }
}
