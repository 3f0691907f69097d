//! Proctor's database migrations. One migration per file, each runs unchanged on Postgres 15
//! and SQLite; `proctord migrate up|down|status` and `--auto-migrate` drive them.

pub use sea_orm_migration::MigrationStatus;
pub use sea_orm_migration::prelude::*;

mod one_column;

mod m20261121_000001_create_procs;
mod m20261121_000002_create_secrets;
mod m20261121_000003_create_users;
mod m20261121_000004_create_group_memberships;
mod m20261121_000005_create_api_tokens;
mod m20261121_000006_create_schedules;
mod m20261121_000007_create_executions;
mod m20261121_000008_create_execution_logs;
mod m20261121_000009_create_schedule_runs;
mod m20261121_000010_create_audit_events;
mod m20261122_000011_add_secret_key_ids;
mod m20261122_000012_drop_user_admin;
mod m20261122_000013_add_execution_leases;
mod m20261122_000014_add_schedule_notifications;
mod m20261130_000015_add_run_integrity;
mod m20261201_000016_add_execution_attempts;
mod m20261201_000017_create_proc_versions;
mod m20261201_000018_create_notifications;
mod m20261201_000019_add_log_since;
mod m20261201_000020_add_proc_resources;
mod m20261202_000021_add_trust;

/// Applies Proctor's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_procs::Migration),
            Box::new(m20261121_000002_create_secrets::Migration),
            Box::new(m20261121_000003_create_users::Migration),
            Box::new(m20261121_000004_create_group_memberships::Migration),
            Box::new(m20261121_000005_create_api_tokens::Migration),
            Box::new(m20261121_000006_create_schedules::Migration),
            Box::new(m20261121_000007_create_executions::Migration),
            Box::new(m20261121_000008_create_execution_logs::Migration),
            Box::new(m20261121_000009_create_schedule_runs::Migration),
            Box::new(m20261121_000010_create_audit_events::Migration),
            Box::new(m20261122_000011_add_secret_key_ids::Migration),
            Box::new(m20261122_000012_drop_user_admin::Migration),
            Box::new(m20261122_000013_add_execution_leases::Migration),
            Box::new(m20261122_000014_add_schedule_notifications::Migration),
            Box::new(m20261130_000015_add_run_integrity::Migration),
            Box::new(m20261201_000016_add_execution_attempts::Migration),
            Box::new(m20261201_000017_create_proc_versions::Migration),
            Box::new(m20261201_000018_create_notifications::Migration),
            Box::new(m20261201_000019_add_log_since::Migration),
            Box::new(m20261201_000020_add_proc_resources::Migration),
            Box::new(m20261202_000021_add_trust::Migration),
        ]
    }
}

/// The names of every table the migrations create, in creation order.
pub const TABLES: &[&str] = &[
    "procs",
    "secrets",
    "users",
    "group_memberships",
    "api_tokens",
    "schedules",
    "executions",
    "execution_logs",
    "schedule_runs",
    "audit_events",
    "proc_versions",
    "notifications",
    "signing_keys",
    "execution_receipts",
    "v2_imports",
];
