//! `me`, users, API tokens and the audit log.

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, SimpleObject};

use super::audit::{self, AuditEvent};
use super::tokens::{self, TokenRequest};
use super::users::{self, UserAccount};
use super::{RequestAuth, app_state, request};
use crate::error::ApiResultExt;
use crate::pagination::PageRequest;

/// The authenticated caller.
#[derive(SimpleObject, Clone, Debug)]
pub struct User {
    /// E-mail address.
    pub email: Option<String>,
    /// Display name (webhook identity services may provide one).
    pub name: Option<String>,
    /// Groups the caller belongs to.
    pub groups: Vec<String>,
    /// Whether the caller administers Proctor.
    pub admin: bool,
}

/// Queries about identity and accountability.
#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// Who the credentials of this request belong to; null when none were sent.
    /// `UNAUTHENTICATED` when they are wrong.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let state = app_state(ctx).gql()?;
        let default = RequestAuth::default();
        let auth = ctx.data_opt::<RequestAuth>().unwrap_or(&default);
        let caller = auth.resolve(state).await.gql()?;
        Ok(caller.map(|caller| User {
            email: caller.email,
            name: caller.name,
            groups: caller.groups,
            admin: caller.admin,
        }))
    }

    /// The audit log, newest first (administrators only).
    #[graphql(
        complexity = "crate::pagination::list_cost(first, crate::pagination::DEFAULT_PAGE_SIZE, crate::pagination::MAX_PAGE_SIZE, child_complexity)"
    )]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, AuditEvent>> {
        let (state, caller) = request(ctx).await.gql()?;
        let page = PageRequest::new(first, after).gql()?;
        audit::list(state, &caller, page).await.gql()
    }

    /// The users of built-in authentication with their groups and active tokens, newest
    /// first (administrators only).
    #[graphql(
        complexity = "crate::pagination::list_cost(first, crate::pagination::DEFAULT_PAGE_SIZE, crate::pagination::MAX_PAGE_SIZE, child_complexity)"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, UserAccount>> {
        let (state, caller) = request(ctx).await.gql()?;
        let page = PageRequest::new(first, after).gql()?;
        users::list(state, &caller, page).await.gql()
    }
}

/// Token management (administrators only; built-in authentication).
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Issues an API token for `email`, creating the user if needed. `groups` replaces the
    /// user's groups; `admin` adds or removes the admin groups. The token is shown only here.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        email: String,
        groups: Option<Vec<String>>,
        admin: Option<bool>,
    ) -> async_graphql::Result<String> {
        let (state, caller) = request(ctx).await.gql()?;
        let request = TokenRequest {
            email,
            groups,
            admin,
        };
        tokens::create_token(state, &caller, request).await.gql()
    }

    /// Revokes every token of `email`; false when none was active.
    async fn revoke_api_token(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<bool> {
        let (state, caller) = request(ctx).await.gql()?;
        tokens::revoke(state, &caller, &email).await.gql()
    }
}
