//! Reading crictl-style JSON or YAML config files into CRI messages. The
//! generated CRI types need every field present; files name only a few, so
//! missing fields are filled with the zero value of whichever JSON shape the
//! type accepts ("" , 0, [], {}, false), found by trying them in turn.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

const ZEROES: [fn() -> Value; 5] = [
    || Value::String(String::new()),
    || Value::from(0),
    || Value::Array(Vec::new()),
    || Value::Object(Map::new()),
    || Value::Bool(false),
];

/// Parses `text` (JSON, else YAML) as a `T`, filling in absent fields.
pub fn parse<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            serde_yaml::from_str(text).with_context(|| format!("{what}: neither JSON nor YAML"))?
        }
    };
    from_partial(value).with_context(|| format!("{what}: not a valid configuration"))
}

/// Deserializes `value` as a `T`, adding the fields it lacks.
pub fn from_partial<T: DeserializeOwned>(mut value: Value) -> Result<T> {
    let mut tried: HashMap<String, usize> = HashMap::new();
    for _ in 0..1024 {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let message = err.inner().to_string();
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let key = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            tried.insert(key, 0);
            let Some(Value::Object(obj)) = navigate(&mut value, &path) else {
                bail!("{path}: {message}");
            };
            obj.insert(field.to_string(), ZEROES[0]());
            continue;
        }
        // A filled-in field of the wrong shape: try the next zero value.
        match tried.get_mut(&path) {
            Some(i) if *i + 1 < ZEROES.len() => {
                *i += 1;
                let next = ZEROES[*i]();
                if let Some(slot) = navigate(&mut value, &path) {
                    *slot = next;
                    continue;
                }
                bail!("{path}: {message}");
            }
            _ => bail!("{path}: {message}"),
        }
    }
    bail!("too many missing fields")
}

/// The value at a serde_path_to_error path (`a.b[2].c`, `.` for the root).
fn navigate<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    if path == "." {
        return Some(value);
    }
    let mut node = value;
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            node = node.get_mut(name)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            node = node.get_mut(i)?;
        }
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crio_api::cri::PodSandboxConfig;

    #[test]
    fn crictl_style_pod_config() {
        let text = r#"{"metadata": {"name": "nginx", "namespace": "default", "uid": "u1", "attempt": 1},
                       "log_directory": "/tmp", "port_mappings": [{"container_port": 80, "host_port": 8080}],
                       "linux": {"security_context": {"namespace_options": {"network": 2}}}}"#;
        let c: PodSandboxConfig = parse(text, "pod.json").unwrap();
        let md = c.metadata.unwrap();
        assert_eq!((md.name.as_str(), md.attempt), ("nginx", 1));
        assert_eq!(c.port_mappings[0].host_port, 8080);
        assert_eq!(
            c.linux
                .unwrap()
                .security_context
                .unwrap()
                .namespace_options
                .unwrap()
                .network,
            2
        );
        assert!(c.labels.is_empty() && c.dns_config.is_none());
    }

    #[test]
    fn yaml_and_errors() {
        let c: PodSandboxConfig = parse(
            "metadata:\n  name: a\n  namespace: b\n  uid: c\nhostname: h\n",
            "pod.yaml",
        )
        .unwrap();
        assert_eq!(c.hostname, "h");
        let err = parse::<PodSandboxConfig>("{\"hostname\": 5}", "pod.json").unwrap_err();
        assert!(format!("{err:#}").contains("hostname"), "{err:#}");
    }
}
