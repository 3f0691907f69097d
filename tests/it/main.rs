//! Proctor's cross-crate integration and end-to-end tests, in one binary.
//!
//! They use real Postgres and Redis when `PROCTOR_TEST_DATABASE_URL` and
//! `PROCTOR_TEST_REDIS_URL` are set (`./tests/run.sh` sets both), and fail rather than skip
//! under `CI=true` when they are not.

mod cli;
mod event_bus;
mod graphql;
mod health;
mod migrations;
mod proctord;
