//! Keeps every definition a proc had: `proc_versions` holds one row per version (the full
//! definition as JSON, who made the change and when), and `executions.proc_version` records
//! which version a run ran. Procs stored before this migration get the row of their current
//! version the first time they change (until then `Proc.versions` shows the current
//! definition as that version, without storing it).

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_procs::Procs;

/// Creates `proc_versions` and adds `executions.proc_version`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProcVersions::Table)
                    .col(big_pk_auto(ProcVersions::Id))
                    .col(big_integer(ProcVersions::ProcId))
                    .col(integer(ProcVersions::Version))
                    .col(json_binary(ProcVersions::Definition))
                    .col(string_null(ProcVersions::ChangedBy))
                    .col(timestamp_with_time_zone(ProcVersions::ChangedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_proc_versions_proc")
                            .from(ProcVersions::Table, ProcVersions::ProcId)
                            .to(Procs::Table, Procs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_proc_versions_proc_version")
                    .table(ProcVersions::Table)
                    .col(ProcVersions::ProcId)
                    .col(ProcVersions::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(integer_null(Executions::ProcVersion))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .drop_column(Executions::ProcVersion)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ProcVersions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ProcVersions {
    Table,
    Id,
    ProcId,
    Version,
    Definition,
    ChangedBy,
    ChangedAt,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    ProcVersion,
}
