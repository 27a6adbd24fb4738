//! Reading crio.conf and its drop-ins: each source is checked on its own (so
//! an error names its file), then merged key by key over the defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::{Table, Value};

use crate::{Config, ConfigError, File};

/// Which source last set each dotted key (keys left at their default are absent).
pub type Origins = BTreeMap<String, String>;

/// A key that was not understood and was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file (or `command line`) that holds the key.
    pub source_name: String,
    /// The dotted key.
    pub key: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: unknown key, ignored",
            self.source_name, self.key
        )
    }
}

/// The result of loading: the configuration, where its values came from, and
/// the warnings to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration, validated.
    pub config: Config,
    /// Source of each key that differs from the defaults' source.
    pub origins: Origins,
    /// Unknown keys.
    pub warnings: Vec<Warning>,
}

impl Loaded {
    /// The source that set `key`, or `defaults`.
    pub fn origin(&self, key: &str) -> &str {
        origin_of(&self.origins, key)
    }
}

pub(crate) fn origin_of<'a>(origins: &'a Origins, key: &str) -> &'a str {
    origins.get(key).map(String::as_str).unwrap_or("defaults")
}

/// Loads `main` (which may be absent unless `main_required`), then every
/// `*.conf` file of `dir` in lexical order, then `overrides` (the command
/// line's values, as a table shaped like the file), and validates the result.
pub fn load(
    main: &Path,
    main_required: bool,
    dir: &Path,
    overrides: Option<Table>,
) -> Result<Loaded, ConfigError> {
    let mut sources = Vec::new();
    match std::fs::read_to_string(main) {
        Ok(text) => sources.push((main.display().to_string(), parse(main, &text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !main_required => {}
        Err(e) => return Err(io_error(main, e)),
    }
    for path in drop_ins(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        sources.push((path.display().to_string(), parse(&path, &text)?));
    }
    if let Some(table) = overrides {
        sources.push(("command line".to_string(), table));
    }
    load_from_tables(sources)
}

fn io_error(path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError {
        source_name: path.display().to_string(),
        key: "-".into(),
        reason: format!("cannot read: {e}"),
    }
}

fn parse(path: &Path, text: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0);
        ConfigError {
            source_name: path.display().to_string(),
            key: format!("line {line}"),
            reason: format!("invalid TOML: {}", e.message()),
        }
    })
}

/// The drop-in files of `dir` in lexical order; a missing directory has none.
fn drop_ins(dir: &Path) -> Result<Vec<std::path::PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Merges named sources in order over the defaults and validates the result.
pub fn load_from_tables(sources: Vec<(String, Table)>) -> Result<Loaded, ConfigError> {
    let mut merged = match Value::try_from(File::default()) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    };
    let mut origins = Origins::new();
    let mut warnings = Vec::new();
    for (name, table) in sources {
        check_source(&name, &table, &mut warnings)?;
        merge(&mut merged, table, "", &name, &mut origins);
    }
    let file = File::deserialize(Value::Table(merged)).map_err(|e| ConfigError {
        source_name: "merged configuration".into(),
        key: "-".into(),
        reason: e.to_string(),
    })?;
    crate::validate(&file.crio, &origins)?;
    Ok(Loaded {
        config: file.crio,
        origins,
        warnings,
    })
}

/// Deserializes one source alone, so a type error names its file and key,
/// and collects its unknown keys.
fn check_source(name: &str, table: &Table, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    let value = Value::Table(table.clone());
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(value, &mut note);
    let result: Result<File, _> = serde_path_to_error::deserialize(de);
    if let Err(e) = result {
        return Err(ConfigError {
            source_name: name.to_string(),
            key: e.path().to_string(),
            reason: e.inner().to_string(),
        });
    }
    warnings.extend(unknown.into_iter().map(|key| Warning {
        source_name: name.to_string(),
        key,
    }));
    Ok(())
}

/// Merges `from` into `into`: tables recursively, every other value replaces.
fn merge(into: &mut Table, from: Table, prefix: &str, source: &str, origins: &mut Origins) {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(table)) => {
                merge(existing, table, &path, source, origins)
            }
            (_, Value::Table(table)) => {
                let mut fresh = Table::new();
                merge(&mut fresh, table, &path, source, origins);
                into.insert(key, Value::Table(fresh));
            }
            (_, value) => {
                origins.insert(path, source.to_string());
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_without_files() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(
            &dir.path().join("missing.conf"),
            false,
            &dir.path().join("missing.d"),
            None,
        )
        .unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn required_main_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("nope.conf"), true, dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("nope.conf"), "{err}");
        assert!(err.reason.contains("cannot read"), "{err}");
    }

    #[test]
    fn unknown_keys_warn_with_file_and_key() {
        let loaded = load_from_tables(vec![(
            "/etc/crio/crio.conf".into(),
            table(
                "[crio]\nfuture_key = 1\n[crio.runtime]\nconmon = \"/usr/bin/conmon\"\n\
                 [crio.runtime.runtimes.runc]\nruntime_path = \"\"\ncontainer_min_memory = \"12MiB\"\n\
                 [crio.nri]\nenable_nri = true\n",
            ),
        )])
        .unwrap();
        let keys: Vec<_> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "crio.future_key",
                "crio.runtime.conmon",
                "crio.runtime.runtimes.runc.container_min_memory",
                "crio.nri"
            ]
        );
        assert_eq!(
            loaded.warnings[1].to_string(),
            "/etc/crio/crio.conf: crio.runtime.conmon: unknown key, ignored"
        );
    }

    #[test]
    fn wrong_type_names_file_and_key() {
        let err = load_from_tables(vec![
            ("a.conf".into(), table("[crio.runtime]\npids_limit = 5\n")),
            (
                "b.conf".into(),
                table("[crio.runtime]\npids_limit = \"many\"\n"),
            ),
        ])
        .unwrap_err();
        assert_eq!(err.source_name, "b.conf");
        assert_eq!(err.key, "crio.runtime.pids_limit");
        assert!(err.reason.contains("invalid type"), "{}", err.reason);
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("crio.conf");
        std::fs::write(&main, "[crio]\nroot = \"/x\"\nroot = = 3\n").unwrap();
        let err = load(&main, true, dir.path(), None).unwrap_err();
        assert_eq!(err.source_name, main.display().to_string());
        assert_eq!(err.key, "line 3");
        assert!(err.reason.starts_with("invalid TOML"), "{}", err.reason);
    }

    #[test]
    fn drop_ins_override_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("crio.conf");
        let d = dir.path().join("crio.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            &main,
            "[crio.runtime]\nctr_stop_timeout = 10\npids_limit = 100\n",
        )
        .unwrap();
        std::fs::write(
            d.join("20-b.conf"),
            "[crio.runtime]\nctr_stop_timeout = 30\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-a.conf"),
            "[crio.runtime]\nctr_stop_timeout = 20\n",
        )
        .unwrap();
        std::fs::write(
            d.join("99-ignored.txt"),
            "[crio.runtime]\nctr_stop_timeout = 99\n",
        )
        .unwrap();
        let loaded = load(&main, true, &d, None).unwrap();
        assert_eq!(loaded.config.runtime.ctr_stop_timeout, 30);
        assert_eq!(loaded.config.runtime.pids_limit, 100);
        assert!(
            loaded
                .origin("crio.runtime.ctr_stop_timeout")
                .ends_with("20-b.conf")
        );
        assert!(
            loaded
                .origin("crio.runtime.pids_limit")
                .ends_with("crio.conf")
        );
        assert_eq!(loaded.origin("crio.root"), "defaults");
    }

    #[test]
    fn overrides_come_last() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("crio.conf");
        std::fs::write(&main, "[crio]\nroot = \"/from/file\"\n").unwrap();
        let loaded = load(
            &main,
            true,
            dir.path(),
            Some(table("[crio]\nroot = \"/from/flag\"\n")),
        )
        .unwrap();
        assert_eq!(loaded.config.root, Path::new("/from/flag"));
        assert_eq!(loaded.origin("crio.root"), "command line");
    }

    #[test]
    fn runtimes_add_to_the_defaults() {
        let loaded = load_from_tables(vec![(
            "x.conf".into(),
            table("[crio.runtime.runtimes.kata]\nruntime_path = \"/usr/bin/kata\"\nruntime_type = \"oci\"\n"),
        )])
        .unwrap();
        let names: Vec<_> = loaded.config.runtime.runtimes.keys().cloned().collect();
        assert_eq!(names, ["crun", "kata", "runc"]);
    }
}
