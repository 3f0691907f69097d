//! Authentication by an external identity service (`PROCTOR_AUTH_WEBHOOK_URL`), the role the Go
//! Proctor's Gate plugin played.
//!
//! Proctor POSTs `{"email": …, "token": …}` and expects `{"active": bool, "name": …,
//! "groups": […]}`. An HTTP 401, 403 or 404 counts as "not active". Answers are reused for the
//! cache lifetime (30 s by default), keyed by a hash of e-mail and token, so the service sees
//! one request per caller per period however busy the caller is: concurrent first requests of
//! one caller wait for a single answer (moka's `try_get_with`). Failures to reach the service
//! are not cached. The cache holds at most [`CACHE_CAPACITY`] callers.

use std::time::Duration;

use async_trait::async_trait;
use proctor_schema::ApiError;
use proctor_schema::auth::tokens::hash_token;
use proctor_schema::ports::authenticator::{Authenticator, Credentials, Principal};
use serde::{Deserialize, Serialize};
use url::Url;

/// Callers whose answers are kept at once; the least recently used go first beyond it.
const CACHE_CAPACITY: u64 = 100_000;

#[derive(Serialize)]
struct IdentityRequest<'a> {
    email: Option<&'a str>,
    token: &'a str,
}

#[derive(Deserialize)]
struct IdentityResponse {
    active: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Clone)]
enum Answer {
    Active(Principal),
    Inactive,
}

/// Checks credentials with an identity service; see the module docs.
pub struct WebhookAuthenticator {
    client: reqwest::Client,
    url: Url,
    cache: moka::future::Cache<String, Answer>,
}

impl WebhookAuthenticator {
    /// An authenticator asking `url`, waiting at most `timeout`, reusing answers for `ttl`.
    pub fn new(url: Url, ttl: Duration, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            url,
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(ttl)
                .build(),
        })
    }

    async fn ask(&self, email: Option<&str>, token: &str) -> Result<Answer, ApiError> {
        let unavailable = |message: String| {
            ApiError::Internal(anyhow::anyhow!(
                "identity service {} failed: {message}",
                self.url
            ))
        };
        let response = self
            .client
            .post(self.url.clone())
            .json(&IdentityRequest { email, token })
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        match response.status().as_u16() {
            200..=299 => {}
            401 | 403 | 404 => return Ok(Answer::Inactive),
            status => return Err(unavailable(format!("HTTP {status}"))),
        }
        let identity: IdentityResponse = response
            .json()
            .await
            .map_err(|e| unavailable(format!("unexpected answer: {}", e.without_url())))?;
        Ok(if identity.active {
            Answer::Active(Principal {
                email: email.map(str::to_owned),
                name: identity.name,
                groups: identity.groups,
            })
        } else {
            Answer::Inactive
        })
    }
}

#[async_trait]
impl Authenticator for WebhookAuthenticator {
    fn enabled(&self) -> bool {
        true
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Option<Principal>, ApiError> {
        let Some(token) = credentials.token() else {
            return Ok(None);
        };
        let email = credentials.email.as_deref().map(str::trim);
        let key = hash_token(&format!("{}\0{token}", email.unwrap_or_default()));
        let answer = self
            .cache
            .try_get_with(key, self.ask(email, token))
            .await
            .map_err(ApiError::unshared)?;
        match answer {
            Answer::Active(principal) => Ok(Some(principal)),
            Answer::Inactive => Err(ApiError::Unauthenticated(
                "the identity service did not accept these credentials".to_owned(),
            )),
        }
    }
}
