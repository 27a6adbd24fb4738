//! Running CNI plugins: ADD, DEL and CHECK of a configuration list, each
//! plugin executed with its `CNI_*` environment and its configuration on
//! stdin (no process-wide environment is touched). Results are returned as
//! JSON for the caller to cache, so DEL works after a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::{NetworkConf, run};

/// A CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The plugin ran and reported an error.
    #[error("CNI plugin {plugin:?} ({file}) {command} failed: {message}")]
    Plugin {
        /// The plugin's type.
        plugin: String,
        /// The network configuration file.
        file: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The plugin's message (and details), or its stderr.
        message: String,
    },
    /// The plugin did not finish in time and was killed.
    #[error("CNI plugin {plugin:?} ({file}) {command} timed out after {timeout:?}: killed")]
    Timeout {
        /// The plugin's type.
        plugin: String,
        /// The network configuration file.
        file: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The deadline it missed.
        timeout: Duration,
    },
    /// The plugin could not be run or answered garbage.
    #[error("CNI plugin {plugin:?} {command}: {message}")]
    Exec {
        /// The plugin's type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// Where the plugins are and how long each run of one may take.
#[derive(Debug, Clone, Copy)]
pub struct Plugins<'a> {
    /// Directories searched for plugin binaries (`CNI_PATH`).
    pub dirs: &'a [PathBuf],
    /// How long one plugin may run before it is killed, with every process
    /// of its process group (a hung plugin must not hold its pod's
    /// RunPodSandbox, and the kubelet behind it, forever).
    pub timeout: Duration,
}

impl Plugins<'_> {
    fn search_path(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// What a pod brings to a CNI call.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the sandbox ID.
    pub container_id: String,
    /// `CNI_NETNS`: the pinned network namespace.
    pub netns: PathBuf,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs (K8S_POD_NAMESPACE, K8S_POD_NAME…).
    pub args: Vec<(String, String)>,
    /// Runtime configuration offered to plugins that declare the capability
    /// (`portMappings`, `bandwidth`, `ipRanges`…).
    pub capabilities: BTreeMap<String, Value>,
}

/// The configuration one plugin of the list receives.
fn plugin_config(
    conf: &NetworkConf,
    plugin: &Value,
    prev: Option<&Value>,
    att: &Attachment,
) -> Value {
    let mut obj: Map<String, Value> = plugin.as_object().cloned().unwrap_or_default();
    obj.insert("cniVersion".into(), json!(conf.cni_version));
    obj.insert("name".into(), json!(conf.name));
    let wanted: Vec<String> = plugin["capabilities"]
        .as_object()
        .map(|caps| {
            caps.iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let runtime: Map<String, Value> = att
        .capabilities
        .iter()
        .filter(|(k, _)| wanted.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        obj.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    if let Some(prev) = prev {
        obj.insert("prevResult".into(), prev.clone());
    }
    Value::Object(obj)
}

/// The span of plugin `index` of `conf` running `command` (`CNI ADD bridge`).
fn plugin_span(conf: &NetworkConf, index: usize, command: &str) -> tracing::Span {
    let kind = &conf.plugins[index].kind;
    tracing::debug_span!("cni", otel.name = %format!("CNI {command} {kind}"))
}

/// Runs plugin `index` of `conf` for `command`: its output on success.
async fn exec(
    conf: &NetworkConf,
    index: usize,
    command: &'static str,
    config: &Value,
    att: &Attachment,
    plugins: &Plugins<'_>,
) -> Result<Option<Value>, CniError> {
    let plugin = &conf.plugins[index];
    let err = |message: String| CniError::Exec {
        plugin: plugin.kind.clone(),
        command,
        message,
    };
    let args: Vec<String> = std::iter::once("IgnoreUnknown=1".to_string())
        .chain(att.args.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    let mut cmd = tokio::process::Command::new(&plugin.binary);
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &att.container_id)
        .env("CNI_NETNS", &att.netns)
        .env("CNI_IFNAME", &att.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", plugins.search_path())
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    let input = serde_json::to_vec(config).map_err(|e| err(e.to_string()))?;
    let out = match run::output(cmd, &input, plugins.timeout).await {
        Ok(out) => out,
        Err(run::RunError::Io(what, e)) => {
            return Err(err(format!("{what} {}: {e}", plugin.binary.display())));
        }
        Err(run::RunError::Timeout) => {
            return Err(CniError::Timeout {
                plugin: plugin.kind.clone(),
                file: conf.file.display().to_string(),
                command,
                timeout: plugins.timeout,
            });
        }
    };
    let stdout = &out.stdout[..];
    if !out.status.success() {
        let message = serde_json::from_slice::<Value>(stdout)
            .ok()
            .and_then(|v| {
                let msg = v["msg"].as_str()?.to_string();
                Some(match v["details"].as_str() {
                    Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                    _ => msg,
                })
            })
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
                if text.is_empty() {
                    format!("exit status {}", out.status)
                } else {
                    text
                }
            });
        return Err(CniError::Plugin {
            plugin: plugin.kind.clone(),
            file: conf.file.display().to_string(),
            command,
            message,
        });
    }
    if command != "ADD" || stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(stdout)
        .map(Some)
        .map_err(|e| err(format!("invalid result: {e}")))
}

/// Runs ADD through the list and returns the final result. On failure the
/// plugins tried so far are deleted again (each DEL under its own
/// deadline), so no half network is left.
pub async fn add(
    conf: &NetworkConf,
    att: &Attachment,
    plugins: &Plugins<'_>,
) -> Result<Value, CniError> {
    let list = conf.list["plugins"].as_array().cloned().unwrap_or_default();
    let mut prev: Option<Value> = None;
    for (i, plugin) in list.iter().enumerate() {
        let config = plugin_config(conf, plugin, prev.as_ref(), att);
        match exec(conf, i, "ADD", &config, att, plugins)
            .instrument(plugin_span(conf, i, "ADD"))
            .await
        {
            Ok(Some(result)) => prev = Some(result),
            Ok(None) => {}
            Err(e) => {
                // The failed plugin too: it may have made half of its part
                // (a veth, an address) before failing or hanging.
                let _ = del_from(conf, att, prev.as_ref(), i + 1, plugins).await;
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or_else(|| json!({"cniVersion": conf.cni_version})))
}

/// Runs DEL through the list in reverse, with the cached ADD result. Every
/// plugin is tried; the first error is returned.
pub async fn del(
    conf: &NetworkConf,
    att: &Attachment,
    result: Option<&Value>,
    plugins: &Plugins<'_>,
) -> Result<(), CniError> {
    del_from(conf, att, result, conf.plugins.len(), plugins).await
}

async fn del_from(
    conf: &NetworkConf,
    att: &Attachment,
    result: Option<&Value>,
    count: usize,
    plugins: &Plugins<'_>,
) -> Result<(), CniError> {
    let list = conf.list["plugins"].as_array().cloned().unwrap_or_default();
    let mut first = None;
    for i in (0..count.min(list.len())).rev() {
        let config = plugin_config(conf, &list[i], result, att);
        if let Err(e) = exec(conf, i, "DEL", &config, att, plugins)
            .instrument(plugin_span(conf, i, "DEL"))
            .await
        {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Runs CHECK through the list (CNI 0.4.0 and later), unless the list
/// disables it.
pub async fn check(
    conf: &NetworkConf,
    att: &Attachment,
    result: &Value,
    plugins: &Plugins<'_>,
) -> Result<(), CniError> {
    if conf.list["disableCheck"].as_bool() == Some(true) || conf.cni_version.starts_with("0.3") {
        return Ok(());
    }
    let list = conf.list["plugins"].as_array().cloned().unwrap_or_default();
    for (i, plugin) in list.iter().enumerate() {
        let config = plugin_config(conf, plugin, Some(result), att);
        exec(conf, i, "CHECK", &config, att, plugins)
            .instrument(plugin_span(conf, i, "CHECK"))
            .await?;
    }
    Ok(())
}

/// The IP addresses (without prefix length) of a result, IPv4 first. A
/// plugin's output is not trusted: what is not an address is left out.
pub fn result_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<std::net::IpAddr> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    ips.sort_by_key(std::net::IpAddr::is_ipv6);
    ips.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PluginRef;

    #[test]
    fn result_ips_keep_addresses_only() {
        let result = json!({"ips": [
            {"address": "fd00::5/64"},
            {"address": "09.88.0.5/16"},
            {"address": "10.88.0.5/16"},
            {"address": "not an ip"},
            {"address": 7},
            {"gateway": "10.88.0.1"},
        ]});
        assert_eq!(result_ips(&result), ["10.88.0.5", "fd00::5"]);
        assert!(result_ips(&json!({"ips": "x"})).is_empty());
    }

    fn conf_with(plugins: Value) -> NetworkConf {
        NetworkConf {
            name: "net".into(),
            cni_version: "1.0.0".into(),
            file: "/etc/cni/net.d/10-net.conflist".into(),
            plugins: vec![],
            list: json!({"cniVersion": "1.0.0", "name": "net", "plugins": plugins}),
        }
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let conf = conf_with(json!([]));
        let mut att = Attachment::default();
        att.capabilities
            .insert("portMappings".into(), json!([{"hostPort": 80}]));
        att.capabilities
            .insert("bandwidth".into(), json!({"ingressRate": 1}));
        let plugin =
            json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}});
        let c = plugin_config(&conf, &plugin, Some(&json!({"ips": []})), &att);
        assert_eq!(c["name"], "net");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 80);
        assert!(c["runtimeConfig"].get("bandwidth").is_none());
        assert!(c["prevResult"].is_object());
        let c = plugin_config(&conf, &json!({"type": "bridge"}), None, &att);
        assert!(c.get("runtimeConfig").is_none() && c.get("prevResult").is_none());
    }

    #[test]
    fn ips_from_results() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.88.0.5/16", "gateway": "10.88.0.1"}]});
        assert_eq!(result_ips(&r), ["10.88.0.5", "fd00::5"]);
        assert!(result_ips(&json!({})).is_empty());
    }

    #[tokio::test]
    async fn failing_plugin_is_named_and_earlier_ones_are_undone() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        let good = tmp.path().join("good");
        let bad = tmp.path().join("bad");
        std::fs::write(
            &good,
            format!("#!/bin/sh\necho \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME\" >> {}\necho '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.1.0.2/24\"}}]}}'\n", log.display()),
        )
        .unwrap();
        std::fs::write(&bad, "#!/bin/sh\necho '{\"code\":11,\"msg\":\"no more addresses\",\"details\":\"range full\"}'\nexit 1\n").unwrap();
        for p in [&good, &bad] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut conf = conf_with(json!([{"type": "good"}, {"type": "bad"}]));
        conf.plugins = vec![
            PluginRef {
                kind: "good".into(),
                binary: good.clone(),
            },
            PluginRef {
                kind: "bad".into(),
                binary: bad,
            },
        ];
        let att = Attachment {
            container_id: "pod1".into(),
            netns: "/proc/self/ns/net".into(),
            ifname: "eth0".into(),
            ..Attachment::default()
        };
        let plugins = Plugins {
            dirs: &[],
            timeout: Duration::from_secs(30),
        };
        let err = add(&conf, &att, &plugins).await.unwrap_err().to_string();
        assert!(
            err.contains("\"bad\"")
                && err.contains("10-net.conflist")
                && err.contains("no more addresses: range full"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "ADD pod1 eth0\nDEL pod1 eth0\n"
        );

        conf.plugins.truncate(1);
        conf.list["plugins"] = json!([{"type": "good"}]);
        let result = add(&conf, &att, &plugins).await.unwrap();
        assert_eq!(result_ips(&result), ["10.1.0.2"]);
        del(&conf, &att, Some(&result), &plugins).await.unwrap();
        check(&conf, &att, &result, &plugins).await.unwrap();
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .ends_with("ADD pod1 eth0\nDEL pod1 eth0\nCHECK pod1 eth0\n")
        );
    }

    #[tokio::test]
    async fn a_hung_plugin_times_out_named() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let hang = tmp.path().join("hang");
        std::fs::write(&hang, "#!/bin/sh\nsleep 600\n").unwrap();
        std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut conf = conf_with(json!([{"type": "hang"}]));
        conf.plugins = vec![PluginRef {
            kind: "hang".into(),
            binary: hang,
        }];
        let plugins = Plugins {
            dirs: &[],
            timeout: Duration::from_millis(200),
        };
        let err = add(&conf, &Attachment::default(), &plugins)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CniError::Timeout { command: "ADD", .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("\"hang\"") && text.contains("timed out after 200ms"),
            "{text}"
        );
    }
}
