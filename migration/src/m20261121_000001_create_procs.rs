//! Creates `procs`.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates the `procs` table.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Procs::Table)
                    .col(big_pk_auto(Procs::Id))
                    .col(string_len_uniq(Procs::Name, 63))
                    .col(text_null(Procs::Description))
                    .col(string_len_null(Procs::Image, 512))
                    .col(json_binary_null(Procs::Command))
                    .col(json_binary(Procs::Args))
                    .col(json_binary(Procs::SecretSpecs))
                    .col(json_binary(Procs::AuthorizedGroups))
                    .col(string_null(Procs::Author))
                    .col(string_null(Procs::Contributors))
                    .col(string_null(Procs::Organization))
                    .col(integer_null(Procs::TimeoutSeconds))
                    .col(integer_null(Procs::Retries))
                    .col(integer(Procs::Version).default(1))
                    .col(timestamp_with_time_zone(Procs::CreatedAt))
                    .col(timestamp_with_time_zone(Procs::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Procs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Procs {
    Table,
    Id,
    Name,
    Description,
    Image,
    Command,
    Args,
    SecretSpecs,
    AuthorizedGroups,
    Author,
    Contributors,
    Organization,
    TimeoutSeconds,
    Retries,
    Version,
    CreatedAt,
    UpdatedAt,
}
