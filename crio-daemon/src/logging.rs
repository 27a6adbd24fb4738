//! Daemon logs on stderr through tracing-subscriber, as text or JSON, only
//! the lines matching `log_filter` when it is set.

use std::sync::{Arc, OnceLock};

use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// Output format of the daemon's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// Maps CRI-O's level names to tracing's (fatal and panic become error).
pub fn filter_for(level: &str) -> &'static str {
    match level {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        _ => "error",
    }
}

impl LogFormat {
    /// The format named by `crio.runtime.log_format` ("text" or "json").
    pub fn named(name: &str) -> Self {
        if name == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }

    /// Its name, as the shims get it.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The handle that swaps the level filter on a reload.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The `log_filter` lines must match (None: every line); a reload swaps it.
static LINE_FILTER: parking_lot::RwLock<Option<Arc<regex::Regex>>> = parking_lot::RwLock::new(None);

/// Installs the global subscriber: the log on stderr in `format`, at
/// `level` (`RUST_LOG` refines it when set), only lines matching `filter`
/// when it is not empty; and `extra` (the OpenTelemetry layer), which
/// filters for itself.
pub fn init(
    level: &str,
    format: LogFormat,
    filter: Option<regex::Regex>,
    extra: Option<Box<dyn Layer<Registry> + Send + Sync>>,
) {
    let levels =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter_for(level)));
    let (levels, handle) = reload::Layer::new(levels);
    // The RPC and step spans are for traces: log lines keep their shape.
    let levels = levels.and(filter_fn(|meta| {
        !(meta.is_span() && meta.target().starts_with("crio_"))
    }));
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(Matching);
    *LINE_FILTER.write() = filter.map(Arc::new);
    let output = match format {
        LogFormat::Text => output.with_filter(levels).boxed(),
        LogFormat::Json => output.json().with_filter(levels).boxed(),
    };
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        std::iter::once(output).chain(extra).collect();
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Stderr, but only the lines that match [`LINE_FILTER`].
#[derive(Clone, Copy)]
struct Matching;

impl<'a> MakeWriter<'a> for Matching {
    type Writer = MatchingLine;

    fn make_writer(&'a self) -> Self::Writer {
        MatchingLine(LINE_FILTER.read().clone())
    }
}

/// One formatted line on its way to stderr.
struct MatchingLine(Option<Arc<regex::Regex>>);

impl std::io::Write for MatchingLine {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let keep = self
            .0
            .as_ref()
            .is_none_or(|re| re.is_match(&String::from_utf8_lossy(line)));
        if keep {
            std::io::stderr().write_all(line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Sets the log level of the running daemon (a SIGHUP reload); `RUST_LOG`,
/// when set, keeps precedence.
pub fn set_level(level: &str) -> Result<(), String> {
    if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
        return Err(format!(
            "{} is set and decides the level",
            EnvFilter::DEFAULT_ENV
        ));
    }
    let Some(handle) = FILTER.get() else {
        return Err("no reloadable log filter installed".into());
    };
    handle
        .reload(EnvFilter::new(filter_for(level)))
        .map_err(|e| e.to_string())
}

/// Sets the `log_filter` of the running daemon (a SIGHUP reload): a
/// regular expression the lines must match, "" for every line.
pub fn set_filter(pattern: &str) -> Result<(), regex::Error> {
    let filter = match pattern {
        "" => None,
        p => Some(Arc::new(regex::Regex::new(p)?)),
    };
    *LINE_FILTER.write() = filter;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crio_levels_map() {
        assert_eq!(filter_for("warning"), "warn");
        assert_eq!(filter_for("fatal"), "error");
        assert_eq!(filter_for("panic"), "error");
        assert_eq!(filter_for("debug"), "debug");
    }
}
