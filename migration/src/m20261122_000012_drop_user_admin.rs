//! Drops `users.admin`: administrators are the members of the admin groups
//! (`PROCTOR_AUTH_REQUIRED_ADMIN_GROUP`), for built-in and webhook auth alike, so a second
//! source of truth would only disagree with it.

use sea_orm_migration::{prelude::*, schema::*};

/// Drops the `admin` column from `users`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::Admin)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(boolean(Users::Admin).default(false))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Admin,
}
