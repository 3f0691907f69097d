//! `group_memberships`: which groups a user belongs to.

use sea_orm::entity::prelude::*;

/// A user's membership of a group; procs authorise groups, not users.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "group_memberships")]
pub struct Model {
    /// The member.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    /// The group name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_name: String,
    /// When the membership was granted.
    pub created_at: DateTimeUtc,
}

/// A membership belongs to a user.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The member.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
