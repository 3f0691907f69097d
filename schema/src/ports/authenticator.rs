//! The authenticator port: who is calling.

use std::fmt;

use async_trait::async_trait;

use crate::error::ApiError;

/// What a caller presented: legacy headers, a bearer token, or a websocket
/// `connection_init` payload carrying the same fields.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `Email-Id` header.
    pub email: Option<String>,
    /// `Access-Token` header.
    pub access_token: Option<String>,
    /// `Authorization: Bearer` token.
    pub bearer_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |token: &Option<String>| token.as_ref().map(|_| "***");
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .field("access_token", &redact(&self.access_token))
            .field("bearer_token", &redact(&self.bearer_token))
            .finish()
    }
}

impl Credentials {
    /// The token presented, if any: the bearer token, else the legacy access token. An e-mail
    /// alone proves nothing.
    pub fn token(&self) -> Option<&str> {
        self.bearer_token
            .as_deref()
            .or(self.access_token.as_deref())
    }
}

/// An authenticated caller, as an authenticator vouches for it. Whether the caller is an
/// administrator is decided by the domain from the groups (see `PROCTOR_AUTH_REQUIRED_ADMIN_GROUP`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Their e-mail, when known.
    pub email: Option<String>,
    /// Display name, when the identity service provides one.
    pub name: Option<String>,
    /// Groups they belong to (procs authorise groups).
    pub groups: Vec<String>,
}

/// Resolves credentials to a principal. Implementations: [`AuthDisabled`]; the built-in
/// authenticator (tokens in the database) in `auth::tokens`; the webhook authenticator (an
/// external identity service) in `proctor-server`.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Whether callers must authenticate at all.
    fn enabled(&self) -> bool;

    /// Whether users and their tokens are kept in Proctor's database, so a user's standing
    /// can be checked while they are not calling (a schedule firing on their behalf).
    fn keeps_users(&self) -> bool {
        false
    }

    /// `Ok(None)` when no token was presented, the principal when the credentials are valid,
    /// [`ApiError::Unauthenticated`] when they are not.
    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<Principal>, ApiError>;
}

/// Auth off (the embedded default on loopback): everybody may do everything, and the e-mail a
/// caller sends is kept for attribution only.
pub struct AuthDisabled;

#[async_trait]
impl Authenticator for AuthDisabled {
    fn enabled(&self) -> bool {
        false
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<Principal>, ApiError> {
        Ok(Some(Principal {
            email: credentials.email.clone(),
            name: None,
            groups: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_never_prints_tokens() {
        let credentials = Credentials {
            email: Some("ada@example.com".into()),
            access_token: Some("s3cr3t-token".into()),
            bearer_token: Some("other-s3cr3t".into()),
        };
        let printed = format!("{credentials:?}");
        assert!(printed.contains("ada@example.com"));
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }

    #[tokio::test]
    async fn auth_disabled_admits_everyone_and_keeps_the_email() {
        let principal = AuthDisabled
            .authenticate(&Credentials {
                email: Some("ada@example.com".into()),
                ..Credentials::default()
            })
            .await
            .unwrap()
            .expect("everyone is admitted");
        assert_eq!(principal.email.as_deref(), Some("ada@example.com"));
        assert!(!AuthDisabled.enabled());
    }
}
