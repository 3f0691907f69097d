//! `proctord`: configuration, start-up, the HTTP routes, and the adapters that connect the
//! domain in `proctor-schema` to real infrastructure (Postgres/SQLite through SeaORM, Redis
//! through fred; local processes and Kubernetes arrive with the executor work).
//!
//! The binary is a thin wrapper over [`cli::main`]; tests and embedders build a [`Server`]
//! from [`Settings`] directly.

pub mod app;
pub mod cli;
pub mod config;
pub mod database;
pub mod redis_bus;
mod routes;
mod telemetry;

pub use app::{Server, StartError};
pub use config::Settings;
