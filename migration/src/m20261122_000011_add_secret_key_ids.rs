//! Adds `secrets.key_id`: which encryption key sealed each value, so keys can be rotated.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds the `key_id` column to `secrets`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Secrets::Table)
                    .add_column(string_len(Secrets::KeyId, 32).default(""))
                    .to_owned(),
            )
            .await?;
        // Rotation looks for rows not yet under the current key.
        manager
            .create_index(
                Index::create()
                    .name("ix_secrets_key_id")
                    .table(Secrets::Table)
                    .col(Secrets::KeyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_secrets_key_id")
                    .table(Secrets::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Secrets::Table)
                    .drop_column(Secrets::KeyId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Secrets {
    Table,
    KeyId,
}
