//! Creates `group_memberships`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000003_create_users::Users;

/// Creates the `group_memberships` table: (user, group) pairs.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GroupMemberships::Table)
                    .col(big_integer(GroupMemberships::UserId))
                    .col(string_len(GroupMemberships::GroupName, 255))
                    .col(timestamp_with_time_zone(GroupMemberships::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(GroupMemberships::UserId)
                            .col(GroupMemberships::GroupName),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_group_memberships_user")
                            .from(GroupMemberships::Table, GroupMemberships::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // "Who is in group X" is asked when listing members and checking admin groups.
        manager
            .create_index(
                Index::create()
                    .name("ix_group_memberships_group")
                    .table(GroupMemberships::Table)
                    .col(GroupMemberships::GroupName)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GroupMemberships::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum GroupMemberships {
    Table,
    UserId,
    GroupName,
    CreatedAt,
}
