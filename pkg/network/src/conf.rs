//! CNI configuration discovery: `.conflist`, `.conf` and `.json` files of the
//! network directory, in lexical order, as libcni reads them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// CNI specification versions crio-rs speaks to plugins.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Why no usable network configuration was found.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The directory holds no configuration file at all.
    #[error("no CNI configuration file in {0}")]
    NoConfig(PathBuf),
    /// A file could not be used; the first such reason is kept.
    #[error("{file}: {reason}")]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong with it.
        reason: ConfProblem,
    },
    /// `cni_default_network` names a network no file defines.
    #[error("CNI network {name:?} (cni_default_network) not found in {dir}")]
    DefaultMissing {
        /// The configured network name.
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
}

/// What makes one configuration file unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfProblem {
    /// Its size cannot be read.
    #[error("{0}")]
    Stat(std::io::Error),
    /// Larger than a configuration can be.
    #[error("{0} bytes is too large for a CNI configuration")]
    TooLarge(u64),
    /// It cannot be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    /// JSON without the CNI header fields.
    #[error("invalid CNI configuration: {0}")]
    Header(serde_json::Error),
    /// No network name.
    #[error("network has no \"name\"")]
    NoName,
    /// A CNI version we do not speak.
    #[error("cniVersion {version:?} is not supported (supported: {})", SUPPORTED_VERSIONS.join(", "))]
    Version {
        /// The file's cniVersion.
        version: String,
    },
    /// A list without plugins.
    #[error("configuration list has no \"plugins\"")]
    NoPlugins,
    /// A plugin without a usable `type`.
    #[error("plugin {0} has no valid \"type\"")]
    NoType(usize),
    /// A plugin binary in none of the plugin directories.
    #[error("plugin {kind:?} not found in {dirs}")]
    NotFound {
        /// The plugin's type.
        kind: String,
        /// The directories searched, colon-separated.
        dirs: String,
    },
}

/// A plugin of a network configuration list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    /// The plugin's `type`, its binary name.
    pub kind: String,
    /// Where its binary was found.
    pub binary: PathBuf,
}

/// A usable network: a configuration list whose plugins all exist.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConf {
    /// The network's name.
    pub name: String,
    /// Its `cniVersion`.
    pub cni_version: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The plugins in order.
    pub plugins: Vec<PluginRef>,
    /// The whole list as JSON (a single `.conf` is wrapped into a list).
    pub list: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    name: String,
}

/// The network to use: `default_network` when set, else the first valid file.
pub fn load_network(
    dir: &Path,
    default_network: &str,
    plugin_dirs: &[PathBuf],
) -> Result<NetworkConf, NetworkError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| NetworkError::NoConfig(dir.to_path_buf()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|x| x == "conf" || x == "conflist" || x == "json")
        })
        .collect();
    if files.is_empty() {
        return Err(NetworkError::NoConfig(dir.to_path_buf()));
    }
    files.sort();
    let mut first_error = None;
    for file in files {
        match read_conf(&file, plugin_dirs) {
            Ok(conf) if default_network.is_empty() || conf.name == default_network => {
                return Ok(conf);
            }
            Ok(_) => {}
            Err(reason) => {
                first_error.get_or_insert(NetworkError::Invalid { file, reason });
            }
        }
    }
    if !default_network.is_empty() {
        return Err(NetworkError::DefaultMissing {
            name: default_network.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    Err(first_error.unwrap_or_else(|| NetworkError::NoConfig(dir.to_path_buf())))
}

/// Files over this size are not CNI configurations.
const MAX_CONF_BYTES: u64 = 1 << 20;

fn read_conf(file: &Path, plugin_dirs: &[PathBuf]) -> Result<NetworkConf, ConfProblem> {
    let size = std::fs::metadata(file).map_err(ConfProblem::Stat)?.len();
    if size > MAX_CONF_BYTES {
        return Err(ConfProblem::TooLarge(size));
    }
    let text = std::fs::read(file).map_err(ConfProblem::Read)?;
    let mut value: serde_json::Value = serde_json::from_slice(&text).map_err(ConfProblem::Json)?;
    let header: Header = serde_json::from_value(value.clone()).map_err(ConfProblem::Header)?;
    if header.name.is_empty() {
        return Err(ConfProblem::NoName);
    }
    if !SUPPORTED_VERSIONS.contains(&header.cni_version.as_str()) {
        return Err(ConfProblem::Version {
            version: header.cni_version,
        });
    }
    let is_list = file.extension().is_some_and(|x| x == "conflist");
    if !is_list {
        let mut plugin = value.clone();
        if let Some(obj) = plugin.as_object_mut() {
            obj.remove("name");
            obj.remove("cniVersion");
        }
        value = serde_json::json!({
            "cniVersion": header.cni_version,
            "name": header.name,
            "plugins": [plugin],
        });
    }
    let plugins = value
        .get("plugins")
        .and_then(|p| p.as_array())
        .filter(|p| !p.is_empty())
        .ok_or(ConfProblem::NoPlugins)?;
    let mut refs = Vec::new();
    for (i, plugin) in plugins.iter().enumerate() {
        let kind = plugin
            .get("type")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty() && !t.contains('/'))
            .ok_or(ConfProblem::NoType(i))?;
        let binary = plugin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                let dirs: Vec<_> = plugin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                ConfProblem::NotFound {
                    kind: kind.to_string(),
                    dirs: dirs.join(":"),
                }
            })?;
        refs.push(PluginRef {
            kind: kind.to_string(),
            binary,
        });
    }
    Ok(NetworkConf {
        name: header.name,
        cni_version: header.cni_version,
        file: file.to_path_buf(),
        plugins: refs,
        list: value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct World {
        _tmp: tempfile::TempDir,
        net: PathBuf,
        bins: Vec<PathBuf>,
    }

    fn world() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let net = tmp.path().join("net.d");
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        for p in ["bridge", "loopback", "portmap"] {
            std::fs::write(bin.join(p), "").unwrap();
        }
        World {
            net,
            bins: vec![tmp.path().join("none"), bin],
            _tmp: tmp,
        }
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#;

    #[test]
    fn empty_dir_is_not_ready() {
        let w = world();
        let err = load_network(&w.net, "", &w.bins).unwrap_err();
        assert!(matches!(err, NetworkError::NoConfig(_)), "{err}");
        let err = load_network(&w.net.join("missing"), "", &w.bins).unwrap_err();
        assert!(err.to_string().contains("no CNI configuration"), "{err}");
    }

    #[test]
    fn first_valid_file_in_lexical_order() {
        let w = world();
        std::fs::write(
            w.net.join("20-second.conflist"),
            LIST.replace("podnet", "second"),
        )
        .unwrap();
        std::fs::write(w.net.join("10-first.conflist"), LIST).unwrap();
        std::fs::write(w.net.join("05-broken.conflist"), "{not json").unwrap();
        std::fs::write(w.net.join("00-readme.txt"), "ignored").unwrap();
        let conf = load_network(&w.net, "", &w.bins).unwrap();
        assert_eq!(conf.name, "podnet");
        assert_eq!(conf.plugins.len(), 2);
        assert!(conf.plugins[0].binary.ends_with("bin/bridge"));
        let conf = load_network(&w.net, "second", &w.bins).unwrap();
        assert_eq!(conf.name, "second");
        let err = load_network(&w.net, "third", &w.bins).unwrap_err();
        assert!(err.to_string().contains("\"third\""), "{err}");
    }

    #[test]
    fn single_conf_becomes_a_list() {
        let w = world();
        std::fs::write(
            w.net.join("99-lo.conf"),
            r#"{"cniVersion":"0.3.1","name":"lo","type":"loopback"}"#,
        )
        .unwrap();
        let conf = load_network(&w.net, "", &w.bins).unwrap();
        assert_eq!(conf.list["plugins"][0]["type"], "loopback");
        assert_eq!(conf.list["name"], "lo");
        assert!(conf.list["plugins"][0].get("name").is_none());
    }

    #[test]
    fn invalid_files_name_file_and_reason() {
        let cases = [
            ("{oops", "invalid JSON"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
                "no \"name\"",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"bridge"}]}"#,
                "not supported",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "no \"plugins\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#,
                "no valid \"type\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"macvlan"}]}"#,
                "\"macvlan\" not found",
            ),
        ];
        for (text, reason) in cases {
            let w = world();
            std::fs::write(w.net.join("10-x.conflist"), text).unwrap();
            let err = load_network(&w.net, "", &w.bins).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("10-x.conflist") && msg.contains(reason),
                "{text}: {msg}"
            );
        }
    }
}
