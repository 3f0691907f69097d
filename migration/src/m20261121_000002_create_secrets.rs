//! Creates `secrets`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_procs::Procs;

/// Creates the `secrets` table: one encrypted value per (proc, key).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Secrets::Table)
                    .col(big_pk_auto(Secrets::Id))
                    .col(big_integer(Secrets::ProcId))
                    .col(string_len(Secrets::Key, 255))
                    .col(blob(Secrets::Ciphertext))
                    .col(timestamp_with_time_zone(Secrets::CreatedAt))
                    .col(timestamp_with_time_zone(Secrets::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_secrets_proc")
                            .from(Secrets::Table, Secrets::ProcId)
                            .to(Procs::Table, Procs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_secrets_proc_key")
                    .table(Secrets::Table)
                    .col(Secrets::ProcId)
                    .col(Secrets::Key)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Secrets::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Secrets {
    Table,
    Id,
    ProcId,
    Key,
    Ciphertext,
    CreatedAt,
    UpdatedAt,
}
