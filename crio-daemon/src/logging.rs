//! Daemon logs on stderr through tracing-subscriber, as text or JSON.

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber; `RUST_LOG` refines the level when set.
pub fn init(level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter_for(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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
