//! Who is calling and what they may do.
//!
//! The server puts the request's [`Credentials`] into the GraphQL request (HTTP headers) or the
//! websocket connection (the `connection_init` payload) as a [`RequestAuth`]; resolvers ask for
//! the [`Caller`] only when they need one, so `serverInfo` works without credentials and an
//! invalid token fails only the fields that need a caller. The configured authenticator runs at
//! most once per request.
//!
//! Rules: administrators are the members of every group in `PROCTOR_AUTH_REQUIRED_ADMIN_GROUP`
//! (everyone, when auth is off) and manage procs, secrets, tokens and the audit log. A proc's
//! `authorizedGroups` gate running it: the caller must be in all of them; an empty list admits
//! any authenticated caller; administrators may run everything.

pub mod audit;
mod graphql;
pub mod tokens;
pub mod users;

use async_graphql::Context;
use proctor_entity::proc;
use tokio::sync::OnceCell;

pub use graphql::{AuthMutation, AuthQuery};

use crate::error::ApiError;
use crate::ports::authenticator::{Credentials, Principal};
use crate::state::AppState;

/// An authenticated caller and their rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// E-mail (absent with auth off when none was sent).
    pub email: Option<String>,
    /// Display name, if the identity service gave one.
    pub name: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Whether they administer Proctor.
    pub admin: bool,
}

impl Caller {
    /// Proctor itself acting (the scheduler, the `proctord` admin commands): full rights,
    /// recorded under `actor`.
    pub fn system(actor: &str) -> Self {
        Self {
            email: None,
            name: Some(actor.to_owned()),
            groups: Vec::new(),
            admin: true,
        }
    }

    /// The caller for an authenticated principal.
    pub fn from_principal(principal: Principal, state: &AppState) -> Self {
        let admin = !state.auth_enabled()
            || state
                .admin_groups()
                .iter()
                .all(|group| principal.groups.contains(group));
        Self {
            email: principal.email,
            name: principal.name,
            groups: principal.groups,
            admin,
        }
    }

    /// How the audit log names this caller.
    pub fn actor(&self) -> Option<String> {
        self.email.clone().or_else(|| self.name.clone())
    }

    /// `FORBIDDEN` unless the caller is an administrator.
    pub fn require_admin(&self, state: &AppState, what: &str) -> Result<(), ApiError> {
        if self.admin {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "only administrators may {what}; administrators are members of {}",
            state.admin_groups().join(" and ")
        )))
    }

    /// The groups of `proc` the caller is missing (empty when they may run it).
    fn missing_groups<'p>(&self, proc: &'p proc::Model) -> Vec<&'p str> {
        if self.admin {
            return Vec::new();
        }
        proc.authorized_groups
            .0
            .iter()
            .filter(|group| !self.groups.contains(group))
            .map(String::as_str)
            .collect()
    }

    /// Whether the caller may run `proc` (and schedule it, read its executions and logs).
    pub fn may_run(&self, proc: &proc::Model) -> bool {
        self.missing_groups(proc).is_empty()
    }

    /// `FORBIDDEN`, naming the missing groups, unless the caller may run `proc`.
    pub fn require_may_run(&self, proc: &proc::Model) -> Result<(), ApiError> {
        let missing = self.missing_groups(proc);
        if missing.is_empty() {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "proc {:?} may only be used by members of {}; you are not in {}",
            proc.name,
            proc.authorized_groups.0.join(", "),
            missing.join(", ")
        )))
    }
}

/// Why authentication failed, kept so every field of a request reports the same thing.
#[derive(Clone, Debug)]
enum Rejection {
    Unauthenticated(String),
    /// The authenticator itself failed; the cause chain, logged where the error is reported.
    Internal(String),
}

/// The credentials of one request (or websocket connection) and, once resolved, its caller.
#[derive(Debug, Default)]
pub struct RequestAuth {
    credentials: Credentials,
    resolved: OnceCell<Result<Option<Caller>, Rejection>>,
}

impl RequestAuth {
    /// Wraps the credentials the transport found.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            resolved: OnceCell::new(),
        }
    }

    /// The caller, if credentials were presented (or auth is off), authenticating on first
    /// use.
    pub async fn resolve(&self, state: &AppState) -> Result<Option<Caller>, ApiError> {
        let outcome = self
            .resolved
            .get_or_init(|| async {
                match state.authenticator().authenticate(&self.credentials).await {
                    Ok(principal) => Ok(principal.map(|p| Caller::from_principal(p, state))),
                    Err(ApiError::Unauthenticated(message)) => {
                        Err(Rejection::Unauthenticated(message))
                    }
                    Err(ApiError::Internal(cause)) => {
                        Err(Rejection::Internal(format!("{cause:#}")))
                    }
                    Err(other) => Err(Rejection::Internal(other.to_string())),
                }
            })
            .await;
        match outcome {
            Ok(caller) => Ok(caller.clone()),
            Err(Rejection::Unauthenticated(message)) => {
                Err(ApiError::Unauthenticated(message.clone()))
            }
            Err(Rejection::Internal(cause)) => Err(ApiError::Internal(anyhow::anyhow!(
                "authentication failed: {cause}"
            ))),
        }
    }

    /// The caller; `UNAUTHENTICATED` when no credentials were presented.
    pub async fn require(&self, state: &AppState) -> Result<Caller, ApiError> {
        self.resolve(state)
            .await?
            .ok_or_else(ApiError::credentials_required)
    }
}

/// The caller of the current GraphQL operation (see [`RequestAuth::require`]).
pub async fn caller(ctx: &Context<'_>) -> Result<Caller, ApiError> {
    let state = app_state(ctx)?;
    match ctx.data_opt::<RequestAuth>() {
        Some(auth) => auth.require(state).await,
        None => RequestAuth::default().require(state).await,
    }
}

/// The application state and the authenticated caller of the current GraphQL operation: what
/// a resolver that acts for someone starts with (`UNAUTHENTICATED` without credentials).
pub async fn request<'c>(ctx: &'c Context<'_>) -> Result<(&'c AppState, Caller), ApiError> {
    Ok((app_state(ctx)?, caller(ctx).await?))
}

/// The application state of the current GraphQL operation.
pub fn app_state<'c>(ctx: &'c Context<'_>) -> Result<&'c AppState, ApiError> {
    ctx.data::<AppState>()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the schema was built without AppState")))
}
