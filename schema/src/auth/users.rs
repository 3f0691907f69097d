//! The users of built-in authentication, for administrators: who exists, their groups, whether
//! they administer Proctor and how many active tokens they hold. Only token hashes are stored,
//! so a token is never shown here.

use std::collections::HashMap;

use async_graphql::SimpleObject;
use async_graphql::connection::Connection;
use chrono::{DateTime, Utc};
use proctor_entity::{api_token, group_membership, user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Caller;
use crate::error::ApiError;
use crate::pagination::{PageRequest, connection};
use crate::state::AppState;

/// A user of built-in authentication.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct UserAccount {
    /// E-mail address (the user's name in Proctor).
    pub email: String,
    /// Groups the user belongs to, by name.
    pub groups: Vec<String>,
    /// Whether one of the groups is an admin group.
    pub admin: bool,
    /// Tokens issued and not revoked.
    pub active_tokens: i32,
    /// When one of the user's tokens was last used; null when never.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

/// A page of users, newest first (administrators only). Three queries per page, whatever its
/// size.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    page: PageRequest,
) -> Result<Connection<String, UserAccount>, ApiError> {
    caller.require_admin(state, "list users")?;
    let db = state.db();
    let mut query = user::Entity::find().order_by_desc(user::Column::Id);
    if let Some(before) = page.before_id {
        query = query.filter(user::Column::Id.lt(before));
    }
    let users = query.limit(page.fetch_limit()).all(db).await?;
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
    for membership in group_membership::Entity::find()
        .filter(group_membership::Column::UserId.is_in(ids.clone()))
        .order_by_asc(group_membership::Column::GroupName)
        .all(db)
        .await?
    {
        groups
            .entry(membership.user_id)
            .or_default()
            .push(membership.group_name);
    }
    let mut tokens: HashMap<i64, (i32, Option<DateTime<Utc>>)> = HashMap::new();
    for token in api_token::Entity::find()
        .filter(api_token::Column::UserId.is_in(ids))
        .filter(api_token::Column::RevokedAt.is_null())
        .all(db)
        .await?
    {
        let entry = tokens.entry(token.user_id).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(token.last_used_at);
    }
    let admin_groups = state.admin_groups();
    let rows = users
        .into_iter()
        .map(|model| {
            let groups = groups.remove(&model.id).unwrap_or_default();
            let (active_tokens, last_used_at) = tokens.remove(&model.id).unwrap_or_default();
            let account = UserAccount {
                admin: groups.iter().any(|g| admin_groups.contains(g)),
                email: model.email,
                groups,
                active_tokens,
                last_used_at,
                created_at: model.created_at,
            };
            (model.id, account)
        })
        .collect();
    Ok(connection(page, rows))
}
