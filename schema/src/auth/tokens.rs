//! Built-in authentication: users, their groups and API tokens in the database.
//!
//! A token is `prt_` followed by 32 random bytes (base64url) and is shown once, when it is
//! issued. Only its SHA-256 is stored: a fast hash is enough for 256 random bits, and it makes
//! the lookup a single indexed query.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use proctor_entity::{api_token, group_membership, user};
use regex::Regex;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, NotSet,
    PaginatorTrait, QueryFilter, Set,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Caller, audit};
use crate::error::ApiError;
use crate::ports::authenticator::{Authenticator, Credentials, Principal};
use crate::state::AppState;

/// The prefix that makes Proctor tokens recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "prt_";
/// A token's last use is written at most this often, so authentication stays read-only for
/// busy clients.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^@\s]+@[^@\s]+$").expect("valid regex"));

/// A new random token.
pub fn generate_token() -> Result<String, ApiError> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("system random generator: {e}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// How a token is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A normalised e-mail address, or `BAD_USER_INPUT` naming `field`.
pub fn normalize_email(field: &str, email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    if email.len() > 320 || !EMAIL.is_match(email) {
        return Err(ApiError::bad_input(
            field,
            format!("{email:?} is not an e-mail address"),
        ));
    }
    Ok(email.to_lowercase())
}

fn normalize_groups(groups: &[String]) -> Result<Vec<String>, ApiError> {
    let mut normalized: Vec<String> = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        let group = group.trim();
        if group.is_empty() || group.contains(char::is_whitespace) || group.len() > 255 {
            return Err(ApiError::bad_input(
                format!("groups[{index}]"),
                "group names are non-empty, without spaces, at most 255 characters",
            ));
        }
        if !normalized.iter().any(|known| known == group) {
            normalized.push(group.to_owned());
        }
    }
    Ok(normalized)
}

/// What to change about a user when issuing a token.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    /// The user, created when unknown.
    pub email: String,
    /// Replace the user's groups with these (unchanged when `None`).
    pub groups: Option<Vec<String>>,
    /// Add (`true`) or remove (`false`) the admin groups (unchanged when `None`).
    pub admin: Option<bool>,
}

/// Issues a token as [`issue_token`] does (administrators only) and tells every replica that
/// the user's groups may have changed.
pub async fn create_token(
    state: &AppState,
    caller: &Caller,
    request: TokenRequest,
) -> Result<String, ApiError> {
    caller.require_admin(state, "issue API tokens")?;
    let email = request.email.clone();
    let token = issue_token(state.db(), caller, state.admin_groups(), request).await?;
    announce_change(state, &email).await;
    Ok(token)
}

/// Revokes as [`revoke_tokens`] does (administrators only) and tells every replica, so open
/// websockets of that user close at once.
pub async fn revoke(state: &AppState, caller: &Caller, email: &str) -> Result<bool, ApiError> {
    caller.require_admin(state, "revoke API tokens")?;
    let revoked = revoke_tokens(state.db(), caller, email).await?;
    announce_change(state, email).await;
    Ok(revoked)
}

/// Issues a new token for `request.email`, creating the user and setting their groups as
/// asked, and records it in the audit log. Returns the token; it is never shown again.
/// Checks no rights: below the server, for `proctord users add` (acting as the system) and
/// [`create_token`].
pub async fn issue_token(
    db: &DatabaseConnection,
    actor: &Caller,
    admin_groups: &[String],
    request: TokenRequest,
) -> Result<String, ApiError> {
    let email = normalize_email("email", &request.email)?;
    let requested_groups = request
        .groups
        .as_deref()
        .map(normalize_groups)
        .transpose()?;
    let token = generate_token()?;
    crate::db::retry_on_conflict(|| {
        store_token(
            db,
            actor,
            admin_groups,
            &email,
            requested_groups.clone(),
            request.admin,
            &token,
        )
    })
    .await?;
    Ok(token)
}

/// Creates or updates the user, their groups and the token in one transaction.
async fn store_token(
    db: &DatabaseConnection,
    actor: &Caller,
    admin_groups: &[String],
    email: &str,
    requested_groups: Option<Vec<String>>,
    admin: Option<bool>,
    token: &str,
) -> Result<(), ApiError> {
    let email = email.to_owned();
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let user = match user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?
    {
        Some(user) => user,
        None => {
            user::ActiveModel {
                id: NotSet,
                email: Set(email.clone()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?
        }
    };
    let current: Vec<String> = group_membership::Entity::find()
        .filter(group_membership::Column::UserId.eq(user.id))
        .all(&txn)
        .await?
        .into_iter()
        .map(|membership| membership.group_name)
        .collect();
    let mut groups = requested_groups.unwrap_or_else(|| current.clone());
    match admin {
        Some(true) => {
            for group in admin_groups {
                if !groups.contains(group) {
                    groups.push(group.clone());
                }
            }
        }
        Some(false) => groups.retain(|group| !admin_groups.contains(group)),
        None => {}
    }
    if groups != current {
        group_membership::Entity::delete_many()
            .filter(group_membership::Column::UserId.eq(user.id))
            .exec(&txn)
            .await?;
        for group in &groups {
            group_membership::ActiveModel {
                user_id: Set(user.id),
                group_name: Set(group.clone()),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        let mut touched = user.clone().into_active_model();
        touched.updated_at = Set(now);
        touched.update(&txn).await?;
    }
    api_token::ActiveModel {
        id: NotSet,
        user_id: Set(user.id),
        token_hash: Set(hash_token(token)),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        "token.create",
        "user",
        &email,
        Some(json!({ "groups": groups })),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Revokes every active token of `email`; `false` when there was none to revoke. Checks no
/// rights (see [`revoke`]).
pub async fn revoke_tokens(
    db: &DatabaseConnection,
    actor: &Caller,
    email: &str,
) -> Result<bool, ApiError> {
    let email = normalize_email("email", email)?;
    let txn = crate::db::begin_write(db).await?;
    let user = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "user",
            key: email.clone(),
        })?;
    let revoked = api_token::Entity::update_many()
        .col_expr(
            api_token::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(api_token::Column::UserId.eq(user.id))
        .filter(api_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    audit::record(
        &txn,
        actor,
        "token.revoke",
        "user",
        &email,
        Some(json!({ "revoked": revoked })),
    )
    .await?;
    txn.commit().await?;
    Ok(revoked > 0)
}

/// Tells every replica that `email`'s credentials or groups changed, so open websockets of
/// that user check them again at once (they also do every `PROCTOR_WS_REVALIDATE_SECONDS`,
/// which bounds the delay when the bus drops the event).
pub async fn announce_change(state: &AppState, email: &str) {
    let email = email.trim().to_lowercase();
    crate::executions::runner::publish(
        state,
        crate::ports::event_bus::Event::CredentialsChanged { email: Some(email) },
    )
    .await;
}

/// The groups of a user.
pub async fn groups_of(db: &DatabaseConnection, user_id: i64) -> Result<Vec<String>, ApiError> {
    Ok(group_membership::Entity::find()
        .filter(group_membership::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|membership| membership.group_name)
        .collect())
}

/// The groups of the user with `email` (none when there is no such user).
pub async fn groups_of_email(
    db: &DatabaseConnection,
    email: &str,
) -> Result<Vec<String>, ApiError> {
    let email = normalize_email("email", email)?;
    match user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?
    {
        Some(user) => groups_of(db, user.id).await,
        None => Ok(Vec::new()),
    }
}

/// The groups of `email` while the user exists and holds an active (unrevoked) token; `None`
/// otherwise. What a schedule's owner must still have when the schedule fires.
pub async fn standing_of(
    db: &DatabaseConnection,
    email: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let email = normalize_email("email", email)?;
    let Some(user) = user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let active = api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(user.id))
        .filter(api_token::Column::RevokedAt.is_null())
        .count(db)
        .await?;
    if active == 0 {
        return Ok(None);
    }
    Ok(Some(groups_of(db, user.id).await?))
}

/// Authenticates against the users and tokens in the database (`PROCTOR_AUTH_ENABLED=true`).
pub struct BuiltinAuthenticator {
    db: DatabaseConnection,
}

impl BuiltinAuthenticator {
    /// An authenticator reading `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Authenticator for BuiltinAuthenticator {
    fn enabled(&self) -> bool {
        true
    }

    fn keeps_users(&self) -> bool {
        true
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<Principal>, ApiError> {
        let Some(token) = credentials.token() else {
            return Ok(None);
        };
        let invalid = || ApiError::Unauthenticated("invalid or revoked token".to_owned());
        let stored = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash_token(token)))
            .filter(api_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or_else(invalid)?;
        let owner = user::Entity::find_by_id(stored.user_id)
            .one(&self.db)
            .await?
            .ok_or_else(invalid)?;
        if let Some(email) = &credentials.email
            && !email.trim().eq_ignore_ascii_case(&owner.email)
        {
            return Err(ApiError::Unauthenticated(format!(
                "the token does not belong to {email}"
            )));
        }
        let now = Utc::now();
        let stale = stored
            .last_used_at
            .is_none_or(|used| (now - used).to_std().unwrap_or_default() >= LAST_USED_RESOLUTION);
        if stale {
            let mut touched = stored.into_active_model();
            touched.last_used_at = Set(Some(now));
            touched.update(&self.db).await?;
        }
        Ok(Some(Principal {
            groups: groups_of(&self.db, owner.id).await?,
            email: Some(owner.email),
            name: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_stored_only_as_hashes() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_ne!(a, b);
        assert!(
            a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43,
            "{a}"
        );
        let hash = hash_token(&a);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a[TOKEN_PREFIX.len()..]));
        assert_eq!(hash, hash_token(&a));
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(
            normalize_email("email", " Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        let error = normalize_email("email", "ada").unwrap_err();
        assert_eq!(error.code(), "BAD_USER_INPUT");
        assert!(error.to_string().starts_with("email:"), "{error}");
    }
}
