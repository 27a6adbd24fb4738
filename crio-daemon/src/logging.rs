//! Daemon logs on stderr through tracing-subscriber, as text or JSON.

use std::sync::OnceLock;

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

/// The handle that swaps the level filter on a reload.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber; `RUST_LOG` refines the level when set.
pub fn init(level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter_for(level)));
    let (filter, handle) = reload::Layer::new(filter);
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
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
