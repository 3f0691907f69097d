//! Logging to stderr with `tracing`: readable text by default, JSON lines on request.

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat, Telemetry, setting};

/// Installs the global subscriber. `RUST_LOG` overrides the configured filter when set.
pub fn init(settings: &Telemetry) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => EnvFilter::try_new(&from_env)
            .map_err(|e| ConfigError::new("RUST_LOG", format!("invalid filter: {e}")))?,
        _ => EnvFilter::try_new(&settings.log_level).map_err(|e| {
            ConfigError::new(
                setting!(Telemetry, log_level),
                format!("invalid filter: {e}"),
            )
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A subscriber is already installed only when proctord is embedded (tests); keep it.
    drop(installed);
    Ok(())
}
