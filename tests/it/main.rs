//! Proctor's cross-crate integration and end-to-end tests, in one binary.
//!
//! They use real Postgres and Redis when `PROCTOR_TEST_DATABASE_URL` and
//! `PROCTOR_TEST_REDIS_URL` are set (`./tests/run.sh` sets both), and fail rather than skip
//! under `CI=true` when they are not.

/// Turns each `async fn scenario(backend: Backend)` into two tests, `scenario::sqlite` and
/// `scenario::postgres`, so behaviour is checked on both storage backends.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario(proctor_tests::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$scenario(proctor_tests::Backend::Postgres).await;
            }
        }
    )*};
}

mod auth;
mod cli;
mod event_bus;
mod graphql;
mod health;
mod migrations;
mod procs;
mod proctord;
mod secrets;
mod webhook;
