//! `api_tokens`: credentials of built-in auth, stored hashed.

use sea_orm::entity::prelude::*;

/// An API token. Only a hash is stored; the token itself is shown once when created.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// Hash of the token; unique so a lookup by hash finds one owner.
    #[sea_orm(unique)]
    pub token_hash: String,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last successful use.
    pub last_used_at: Option<DateTimeUtc>,
    /// Set when revoked; a revoked token never authenticates again.
    pub revoked_at: Option<DateTimeUtc>,
}

/// A token belongs to a user.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owner.
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
