//! Pods in tests: a daemon with its own bridge network (a bridge name,
//! subnet and IPAM store of its own, removed on drop) and pod configs.

use std::process::Command;

use anyhow::{Context, Result};
use crio_api::cri::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata,
};

use crate::TestDaemon;

/// A daemon on a bridge network of its own.
pub struct PodWorld {
    /// The daemon (dropped before the bridge).
    pub daemon: TestDaemon,
    /// The bridge's name.
    pub bridge: String,
    /// The pod subnet's first three octets, e.g. `10.123.45`.
    pub prefix: String,
}

impl PodWorld {
    /// Starts a daemon whose CNI directory holds a bridge network (bridge,
    /// host-local, portmap) unique to this process.
    pub fn start() -> Result<Self> {
        Self::start_with("")
    }

    /// Like [`PodWorld::start`], for a daemon that pulls from `registry`.
    pub fn start_with_registry(registry: &crate::Registry) -> Result<Self> {
        Self::start_with_registry_and(registry, "")
    }

    /// Like [`PodWorld::start_with_registry`], with more `[crio.image]` text.
    pub fn start_with_registry_and(registry: &crate::Registry, image_toml: &str) -> Result<Self> {
        Self::start_with_registry_files(registry, image_toml, &[])
    }

    /// Like [`PodWorld::start_with_registry_and`], after writing `files`
    /// into the daemon's directory (see [`TestDaemon::start_with_files`]).
    pub fn start_with_registry_files(
        registry: &crate::Registry,
        image_toml: &str,
        files: &[(&str, &str)],
    ) -> Result<Self> {
        let (bridge, prefix) = Self::names();
        let conflist = bridge_conflist(&bridge, &prefix);
        let mut all = vec![("net.d/10-crio-test.conflist", conflist.as_str())];
        all.extend_from_slice(files);
        let daemon = crate::world::daemon_for(registry, "", image_toml, &all)?;
        Ok(Self {
            daemon,
            bridge,
            prefix,
        })
    }

    /// A bridge name and subnet prefix of this world's own: from the
    /// process ID and a count of the worlds this process made, so tests
    /// running in parallel threads of one process never share a bridge
    /// (one world's drop would delete the others' bridge).
    fn names() -> (String, String) {
        static WORLDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = WORLDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 64;
        let pid = std::process::id();
        let slot = (pid % 1_000_000) * 64 + n;
        (
            format!("crio{}x{n}", pid % 1_000_000),
            format!("10.{}.{}", 100 + (slot / 250) % 100, slot % 250),
        )
    }

    /// Like [`PodWorld::start`], with more crio.conf text.
    pub fn start_with(extra_toml: &str) -> Result<Self> {
        let (bridge, prefix) = Self::names();
        let conflist = bridge_conflist(&bridge, &prefix);
        let daemon = TestDaemon::start_with_files(
            extra_toml,
            &[],
            &[("net.d/10-crio-test.conflist", &conflist)],
        )?;
        Ok(Self {
            daemon,
            bridge,
            prefix,
        })
    }

    /// Like [`PodWorld::start`], with a second, IPv6 range (`v6_prefix()`/64)
    /// in the network, so every pod gets an address of each family, and the
    /// bandwidth plugin after the bridge.
    pub fn start_dual_stack() -> Result<Self> {
        let (bridge, prefix) = Self::names();
        let mut conflist: serde_json::Value =
            serde_json::from_str(&bridge_conflist(&bridge, &prefix))?;
        conflist["plugins"][0]["ipam"]["ranges"]
            .as_array_mut()
            .context("ranges")?
            .push(serde_json::json!([{ "subnet": format!("{}/64", v6_prefix()) }]));
        conflist["plugins"]
            .as_array_mut()
            .context("plugins")?
            .insert(
                1,
                serde_json::json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
            );
        let daemon = TestDaemon::start_with_files(
            "",
            &[],
            &[("net.d/10-crio-test.conflist", &conflist.to_string())],
        )?;
        Ok(Self {
            daemon,
            bridge,
            prefix,
        })
    }

    /// IP allocations the IPAM store still holds.
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.daemon.path("ipam/crio-test"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for PodWorld {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A bridge network (bridge, host-local, portmap; the daemon brings `lo` up
/// itself) on `bridge` with
/// the subnet `PREFIX.0/24`, its IPAM store under `{dir}/ipam`.
pub fn bridge_conflist(bridge: &str, prefix: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"crio-test","plugins":[
          {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,"hairpinMode":true,
            "ipam":{{"type":"host-local","dataDir":"{{dir}}/ipam","ranges":[[{{"subnet":"{prefix}.0/24"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},
          {{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#
    )
}

/// This process's IPv6 pod subnet prefix, e.g. `fd00:1f2e::`.
pub fn v6_prefix() -> String {
    format!("fd00:{:x}::", std::process::id() % 0xffff)
}

/// The cgroup parent of this test process's pods: its own, so cleaning it up
/// cannot race with another test's containers.
pub fn test_cgroup_parent() -> String {
    format!("/crio-test-{}", std::process::id())
}

/// [`pod_config`] of a privileged pod (one that may hold privileged containers).
pub fn privileged_pod_config(name: &str) -> PodSandboxConfig {
    let mut pod = pod_config(name, NamespaceMode::Pod as i32, NamespaceMode::Pod as i32);
    if let Some(sc) = pod.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        sc.privileged = true;
    }
    pod
}

/// A pod config with a name unique to the test and the given namespaces.
pub fn pod_config(name: &str, network: i32, ipc: i32) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: test_cgroup_parent(),
            security_context: Some(LinuxSandboxSecurityContext {
                // Like kubelet: containers keep their own PID namespace
                // unless the pod shares one.
                namespace_options: Some(NamespaceOption {
                    network,
                    ipc,
                    pid: NamespaceMode::Container as i32,
                    ..NamespaceOption::default()
                }),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    }
}
