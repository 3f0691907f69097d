//! SeaORM entities for every Proctor table: one module per table, plain data, no logic.
//!
//! The migrations in `proctor-migration` create exactly these tables; the integration tests
//! round-trip a row of every entity on Postgres and on SQLite so the two cannot drift apart.
//! GraphQL types live in `proctor-schema` and are built from these models, never derived on them.

pub mod api_token;
pub mod audit_event;
pub mod execution;
pub mod execution_log;
pub mod execution_receipt;
pub mod group_membership;
pub mod json;
pub mod notification;
pub mod proc;
pub mod proc_version;
pub mod schedule;
pub mod schedule_run;
pub mod secret;
pub mod signing_key;
pub mod user;
pub mod v2_import;
pub mod values;
