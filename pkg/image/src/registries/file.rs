//! Reading registries.conf and its drop-ins: the TOML shapes, the checks of
//! each `[[registry]]` and alias, and the merge of one file over another.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{
    Mirror, PullFromMirror, RegistriesConf, RegistriesError, Registry, ShortNameMode, host_problem,
    normalise_host, normalise_location,
};
use crate::reference::{Reference, is_short_name};

/// Largest registries.conf file read.
const MAX_FILE: u64 = 4 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileToml {
    unqualified_search_registries: Option<Vec<String>>,
    short_name_mode: Option<ShortNameMode>,
    #[serde(default)]
    registry: Vec<RegistryToml>,
    aliases: Option<BTreeMap<String, String>>,
    /// Present only in the version 1 format.
    registries: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistryToml {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorToml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorToml {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<PullFromMirror>,
}

impl RegistriesConf {
    /// Reads `path` (missing: an empty configuration), then each `*.conf`
    /// of `dropin_dir` in lexical order (a missing directory has none).
    pub fn load(path: &Path, dropin_dir: Option<&Path>) -> Result<Self, RegistriesError> {
        let mut conf = RegistriesConf::default();
        if let Some(text) = read_optional(path)? {
            conf.merge(&text, &path.display().to_string())?;
        }
        let Some(dir) = dropin_dir else {
            return Ok(conf);
        };
        let read_error = |source| RegistriesError::Read {
            path: dir.display().to_string(),
            source,
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(conf),
            Err(e) => return Err(read_error(e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(read_error)?.path();
            if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        for file in files {
            if let Some(text) = read_optional(&file)? {
                conf.merge(&text, &file.display().to_string())?;
            }
        }
        Ok(conf)
    }

    /// Parses one file's text; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, RegistriesError> {
        let mut conf = RegistriesConf::default();
        conf.merge(text, source_name)?;
        Ok(conf)
    }

    /// Merges a file over this configuration, as a drop-in does.
    fn merge(&mut self, text: &str, source_name: &str) -> Result<(), RegistriesError> {
        let file: FileToml = toml::from_str(text).map_err(|e| RegistriesError::Syntax {
            source_name: source_name.to_string(),
            detail: toml_error(text, &e),
        })?;
        let invalid = |place: String, value: &str, reason: String| RegistriesError::Invalid {
            source_name: source_name.to_string(),
            place,
            value: value.to_string(),
            reason,
        };
        if file.registries.is_some() {
            return Err(RegistriesError::Version1 {
                source_name: source_name.to_string(),
            });
        }
        if let Some(search) = file.unqualified_search_registries {
            for (i, host) in search.iter().enumerate() {
                host_problem(host).map_err(|reason| {
                    invalid(
                        format!("unqualified-search-registries[{i}]"),
                        host,
                        reason.to_string(),
                    )
                })?;
            }
            self.search = search.iter().map(|h| normalise_host(h)).collect();
        }
        if let Some(mode) = file.short_name_mode {
            self.short_name_mode = mode;
        }
        let mut seen = Vec::new();
        for (i, reg) in file.registry.into_iter().enumerate() {
            let place = format!("[[registry]] {}", i + 1);
            let registry = parse_registry(reg).map_err(|(field, value, reason)| {
                invalid(format!("{place}: {field}"), &value, reason)
            })?;
            if seen.contains(&registry.prefix) {
                return Err(invalid(
                    format!("{place}: prefix"),
                    &registry.prefix,
                    "defined twice in one file".into(),
                ));
            }
            seen.push(registry.prefix.clone());
            match self
                .registries
                .iter_mut()
                .find(|r| r.prefix == registry.prefix)
            {
                Some(earlier) => *earlier = registry,
                None => self.registries.push(registry),
            }
        }
        for (short, target) in file.aliases.unwrap_or_default() {
            let place = format!("[aliases] {short:?}");
            if !is_short_name(&short) || short.contains(['@', ':']) || short.is_empty() {
                return Err(invalid(
                    "[aliases] key".into(),
                    &short,
                    "must be a short name without tag or digest".into(),
                ));
            }
            let reference = Reference::parse(&target)
                .map_err(|e| invalid(place.clone(), &target, e.to_string()))?;
            if reference.tag.is_some() || reference.digest.is_some() {
                return Err(invalid(
                    place,
                    &target,
                    "an alias names a repository, without tag or digest".into(),
                ));
            }
            self.aliases.insert(short, reference);
        }
        Ok(())
    }
}

/// A `[[registry]]` checked and normalised; an error is (field, value,
/// reason).
fn parse_registry(reg: RegistryToml) -> Result<Registry, (String, String, String)> {
    let location = reg.location.unwrap_or_default();
    let prefix = reg.prefix.unwrap_or_else(|| location.clone());
    if prefix.is_empty() {
        return Err((
            "prefix".into(),
            prefix,
            "prefix or location must be set".into(),
        ));
    }
    let prefix_error = |reason| ("prefix".to_string(), prefix.clone(), reason);
    let (prefix_norm, location) = if let Some(domain) = prefix.strip_prefix("*.") {
        if domain.contains(['/', ':', '*']) {
            return Err(prefix_error("a wildcard prefix is *.domain only".into()));
        }
        host_problem(domain).map_err(|r| prefix_error(r.to_string()))?;
        if !location.is_empty() {
            return Err((
                "location".into(),
                location,
                "must be unset with a wildcard prefix".into(),
            ));
        }
        (prefix.clone(), String::new())
    } else {
        let p = normalise_location(&prefix).map_err(|r| prefix_error(r.to_string()))?;
        let l = if location.is_empty() {
            p.clone()
        } else {
            normalise_location(&location)
                .map_err(|r| ("location".to_string(), location, r.to_string()))?
        };
        (p, l)
    };
    let mut mirrors = Vec::new();
    for (j, m) in reg.mirror.into_iter().enumerate() {
        let field = format!("mirror {}: location", j + 1);
        let location = normalise_location(&m.location)
            .map_err(|r| (field, m.location.clone(), r.to_string()))?;
        let default = if reg.mirror_by_digest_only {
            PullFromMirror::DigestOnly
        } else {
            PullFromMirror::All
        };
        mirrors.push(Mirror {
            location,
            insecure: m.insecure,
            pull_from_mirror: m.pull_from_mirror.unwrap_or(default),
        });
    }
    Ok(Registry {
        prefix: prefix_norm,
        location,
        insecure: reg.insecure,
        blocked: reg.blocked,
        mirrors,
    })
}

/// A TOML error on one line: `line N: message`.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message().trim())
        }
        None => e.message().trim().to_string(),
    }
}

/// A file's text, None when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, RegistriesError> {
    Ok(crate::files::read_text_if_present(path, MAX_FILE)?)
}
