//! `users`: people and service accounts known to built-in auth.

use sea_orm::entity::prelude::*;

/// A user of built-in auth.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique e-mail address; what the legacy `Email-Id` header carries.
    #[sea_orm(unique)]
    pub email: String,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last update time.
    pub updated_at: DateTimeUtc,
}

/// A user has tokens and group memberships.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Their API tokens.
    #[sea_orm(has_many = "super::api_token::Entity")]
    ApiToken,
    /// Their groups.
    #[sea_orm(has_many = "super::group_membership::Entity")]
    GroupMembership,
}

impl Related<super::api_token::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ApiToken.def()
    }
}

impl Related<super::group_membership::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GroupMembership.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
