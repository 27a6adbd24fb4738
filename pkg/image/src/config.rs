//! The runtime part of an image's configuration (its `config` member: Env,
//! Entrypoint, Cmd, User, WorkingDir, Volumes, StopSignal, Labels...),
//! typed. Images are stored with the configuration document as pulled;
//! containers are made from this.

use oci_spec::image::Config;

/// Why an image's runtime configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("image config: {0}")]
pub struct ConfigError(#[from] serde_path_to_error::Error<serde_json::Error>);

/// The `config` member of the image configuration document `doc` (empty
/// when it has none); a member of the wrong type is an error naming it.
pub fn runtime_config(doc: &serde_json::Value) -> Result<Config, ConfigError> {
    let member = doc.get("config").unwrap_or(&serde_json::Value::Null);
    let config: Option<Config> = serde_path_to_error::deserialize(member)?;
    Ok(config.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn docker_and_oci_configs_read() {
        let doc = json!({"architecture": "amd64", "os": "linux", "config": {
            "User": "tester", "Env": ["A=1"], "Entrypoint": null, "Cmd": ["sh"],
            "WorkingDir": "/w", "Volumes": {"/data": {}}, "ExposedPorts": {"80/tcp": {}},
            "StopSignal": "SIGQUIT", "Labels": {"a": "b"}, "Hostname": "", "OnBuild": null,
            "Healthcheck": {"Test": ["NONE"]}, "ArgsEscaped": true
        }});
        let c = runtime_config(&doc).unwrap();
        assert_eq!(c.user().as_deref(), Some("tester"));
        assert_eq!(c.env().as_deref(), Some(&["A=1".to_string()][..]));
        assert_eq!(c.entrypoint(), &None);
        assert_eq!(c.cmd().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(c.volumes().as_deref(), Some(&["/data".to_string()][..]));
        assert_eq!(c.stop_signal().as_deref(), Some("SIGQUIT"));
        for empty in [json!({}), json!({"config": null}), json!({"config": {}})] {
            assert_eq!(runtime_config(&empty).unwrap(), Config::default());
        }
    }

    #[test]
    fn members_of_the_wrong_type_are_named() {
        for (doc, field) in [
            (json!({"config": {"Env": ["A=1", 7]}}), "Env[1]"),
            (json!({"config": {"Cmd": "sh -c true"}}), "Cmd"),
            (json!({"config": {"User": 0}}), "User"),
            (json!({"config": {"Volumes": ["/data"]}}), "Volumes"),
            (json!({"config": "x"}), "expected struct Config"),
        ] {
            let err = runtime_config(&doc).unwrap_err().to_string();
            assert!(
                err.starts_with("image config: ") && err.contains(field),
                "{err}"
            );
        }
    }
}
