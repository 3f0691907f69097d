//! The harness for Proctor's integration and end-to-end tests.
//!
//! - [`infra`]: finds the real Postgres and Redis the tests use (`PROCTOR_TEST_DATABASE_URL`,
//!   `PROCTOR_TEST_REDIS_URL`); under `CI=true` a missing one fails the test instead of skipping.
//! - [`TestDatabase`]: a fresh Postgres database (or SQLite file) per test.
//! - [`TestApp`]: the real server, in-process, on `127.0.0.1:0`, with its typed API ([`api`]:
//!   operations generated from `tests/graphql/*.graphql`).
//! - [`RedisServer`]: a `redis-server` process a test may stop and start again.
//! - [`Proctord`]: the built `proctord` binary run as a child process.
//! - [`fake_kube::FakeKube`]: an in-process Kubernetes API whose pods run as local processes.
//! - [`legacy_cli`]: a replay of the Go `proctor` CLI v2.0.8 against the REST shim.
//! - [`proxy::DroppingProxy`]: a TCP proxy that cuts connections on demand.
//! - [`sinks`]: an SMTP server and an HTTP server that keep the notifications they receive.
//!
//! `./tests/run.sh` provides Postgres and Redis and runs the whole suite.

pub mod api;
pub mod fake_kube;
pub mod graphql_ws;
pub mod infra;
pub mod legacy_cli;
pub mod pod_security;
mod process;
pub mod proxy;
pub mod sinks;
mod test_app;
mod test_database;

pub use infra::{
    RedisServer, free_port, http_client, init_tracing, post_graphql, workspace_binary,
};
pub use process::{Proctord, live_members, proctord_command};
pub use test_app::{Backend, Bus, Stack, TestApp, TestAppBuilder};
pub use test_database::TestDatabase;
