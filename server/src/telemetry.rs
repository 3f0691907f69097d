//! Logging to stderr with `tracing` (readable text by default, JSON lines on request) and,
//! when `PROCTOR_OTLP_ENDPOINT` is set, spans exported over OTLP (HTTP/protobuf): requests,
//! GraphQL operations and resolvers, runs and notifications, in one trace per request. The
//! export runs on its own thread in batches, so a slow or absent collector never holds up a
//! request; what it cannot deliver is dropped, never retried forever.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{ConfigError, LogFormat, Telemetry, setting};

/// Flushes exported spans when dropped (at the end of `main`).
pub struct TraceExport(Option<SdkTracerProvider>);

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("proctord: cannot flush the last spans to the OTLP collector: {error}");
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the configured filter when set.
pub fn init(settings: &Telemetry) -> Result<TraceExport, ConfigError> {
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
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let provider = match &settings.otlp_endpoint {
        Some(endpoint) => Some(provider(endpoint)?),
        None => None,
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("proctord"))
            .with_filter(LevelFilter::INFO)
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    // A subscriber is already installed only when proctord is embedded (tests); keep it.
    drop(installed);
    Ok(TraceExport(provider))
}

/// The tracer provider exporting to `<endpoint>/v1/traces`.
fn provider(endpoint: &url::Url) -> Result<SdkTracerProvider, ConfigError> {
    crate::install_crypto_provider();
    // Appended to the endpoint's own path (`https://gw/otlp` → `https://gw/otlp/v1/traces`).
    let mut base = endpoint.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let traces = base
        .join("v1/traces")
        .map_err(|e| ConfigError::new(setting!(Telemetry, otlp_endpoint), e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces.as_str())
        .build()
        .map_err(|e| ConfigError::new(setting!(Telemetry, otlp_endpoint), e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("proctord")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
