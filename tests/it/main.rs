//! Proctor's cross-crate integration and end-to-end tests, in one binary.
//!
//! They use real Postgres and Redis when `PROCTOR_TEST_DATABASE_URL` and
//! `PROCTOR_TEST_REDIS_URL` are set (`./tests/run.sh` sets both), and fail rather than skip
//! under `CI=true` when they are not.
//!
//! Tests speak to the server through its typed API ([`proctor_tests::api`]: operations of
//! `tests/graphql/*.graphql`, checked against the committed SDL at compile time). Raw requests
//! and JSON stay only where the wire itself is under test: the GraphQL transports and their
//! limits (`graphql`), the websocket protocols and what a hostile client sends (`security`,
//! the protocol test of `auth`), the introspection walk (`secrets`), the CLI's own operations
//! and its `-o json` output (`cli`), the v2 REST routes' bodies (`rest`), the health
//! endpoints' JSON (`health`, `/readyz` checks), notification payloads (`schedules`), the
//! Kubernetes objects the fake API server holds (`kubernetes`), and what a browser showed
//! (`playground`).

/// Turns each `async fn scenario(stack: Stack)` into two tests: `scenario::embedded` (SQLite
/// and the in-memory bus) and `scenario::production` (Postgres and Redis).
macro_rules! on_both_stacks {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn embedded() {
                super::$scenario(proctor_tests::Stack::Embedded).await;
            }

            #[tokio::test]
            #[cfg_attr(
                any(proctor_no_postgres, proctor_no_redis),
                ignore = "needs Postgres and Redis: set PROCTOR_TEST_DATABASE_URL and \
                          PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
            )]
            async fn production() {
                super::$scenario(proctor_tests::Stack::Production).await;
            }
        }
    )*};
}

mod auth;
mod bench;
mod cli;
mod console;
mod deploy;
mod docs;
mod event_bus;
mod executions;
mod graphql;
mod graphql_over_http;
mod graphql_ws_protocol;
mod health;
mod import_v2;
mod kubernetes;
mod log_batches;
mod metrics;
mod migrations;
mod playground;
mod procs;
mod proctord;
mod replicas;
mod rest;
mod schedules;
mod secrets;
mod security;
mod tour;
mod trust;
mod webhook;
