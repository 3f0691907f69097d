//! Logs and metrics: the log format and filter, and who may scrape `/metrics`.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

use super::{Credential, choice, credential};

/// Logs and metrics; used as given (each value is checked on its own).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Logs and metrics")]
pub struct Telemetry {
    /// Log line format on stderr: `text` or `json`.
    #[arg(long, env = "PROCTOR_LOG_FORMAT", default_value = "text", value_parser = choice::<LogFormat>)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `proctor_server=debug,info`; `RUST_LOG` wins when set.
    /// The migration library's per-step lines are quieted by default: proctord logs a summary.
    #[arg(long, env = "PROCTOR_LOG_LEVEL", default_value = "info,sea_orm_migration=warn")]
    #[arg(value_parser = filter)]
    pub log_level: String,
    /// Bearer token `/metrics` asks for when auth is on (open when unset).
    #[arg(long, env = "PROCTOR_METRICS_TOKEN", hide_env_values = true, value_parser = credential)]
    pub metrics_token: Option<Credential>,
    /// Export traces over OTLP (HTTP/protobuf) to this collector, e.g. `http://otel:4318`
    /// (spans go to `<url>/v1/traces`); no export when unset.
    #[arg(long, env = "PROCTOR_OTLP_ENDPOINT", hide_env_values = true, value_parser = otlp_endpoint)]
    pub otlp_endpoint: Option<url::Url>,
}

/// An `http`/`https` collector URL.
fn otlp_endpoint(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?} must be an http:// or https:// URL"));
    }
    Ok(url)
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A `tracing` filter directive list.
fn filter(raw: &str) -> Result<String, String> {
    let directives = raw.trim();
    if directives.is_empty() {
        return Err("must not be empty".to_owned());
    }
    EnvFilter::try_new(directives).map_err(|e| format!("invalid filter {directives:?}: {e}"))?;
    Ok(directives.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, settings};
    use super::*;

    #[test]
    fn each_bad_value_names_its_setting() {
        assert_refused(
            "--log-format=xml           PROCTOR_LOG_FORMAT
             --log-level=info,x=loud    PROCTOR_LOG_LEVEL
             --otlp-endpoint=otel:4318  PROCTOR_OTLP_ENDPOINT",
        );
        let telemetry = settings(&["--log-format=JSON"]).unwrap().telemetry;
        assert_eq!(telemetry.log_format, LogFormat::Json);
    }
}
