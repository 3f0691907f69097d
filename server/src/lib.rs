//! `proctord`: configuration, start-up, the HTTP routes, and the adapters that connect the
//! domain in `proctor-schema` to real infrastructure (Postgres/SQLite through SeaORM, Redis
//! through fred, local processes and Kubernetes Jobs, SMTP/Slack/webhook notifiers) and the
//! scheduler loop.
//!
//! The binary is a thin wrapper over [`cli::main`]; tests and embedders build a [`Server`]
//! from [`Settings`] directly.

pub mod app;
pub mod cli;
pub mod config;
mod credentials;
pub mod database;
pub mod document_cache;
pub mod egress;
pub mod graphql_http;
pub mod graphql_ws;
pub mod guard;
pub mod import_v2;
pub mod kube_executor;
pub mod kube_logs;
pub mod local_executor;
pub mod negotiation;
pub mod notifiers;
pub mod orphans;
pub mod playground;
pub mod redis_bus;
pub mod reference;
pub mod rest;
mod routes;
pub mod sandbox;
pub mod scheduler;
pub mod scrape;
mod telemetry;
pub mod webhook_auth;

pub use app::{Server, StartError};
pub use config::Settings;

/// Installs ring as rustls' process-wide crypto provider. reqwest is built without a provider
/// of its own (so aws-lc-rs never enters the build next to ring), which makes this mandatory
/// before any HTTPS client exists; calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
