//! Per-run identity tokens: a proc with `identity: { audience: [...] }` gets, in each run,
//! `PROCTOR_ID_TOKEN`, a JWT signed with the server's ES256 key ([`crate::signing`]) that a
//! cloud's workload identity federation (AWS, GCP, Azure, Vault) can trust the way it trusts
//! CI jobs, through `/.well-known/openid-configuration` and `/.well-known/jwks.json`.
//!
//! Invariants: the token is made when the run starts (not when it is queued), so it is valid
//! for the run's deadline plus [`EXPIRY_MARGIN`], at most [`MAX_LIFETIME`] in all; it is handed
//! to the run as a secret (masked in its output like one, added to the run's sealed mask so a
//! later supervisor masks it too, and on Kubernetes kept in the run's Secret); its claims name
//! the run exactly (`sub` is `proc:<name>`).

use std::time::Duration;

use chrono::Utc;
use proctor_entity::execution;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// The variable the token is passed in.
pub const TOKEN_VARIABLE: &str = "PROCTOR_ID_TOKEN";
/// How long a token outlives the run's deadline (clock skew, a final upload).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The longest a token lives, however long the run may take.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The claims of `execution`'s token, made as it starts: valid from now until its deadline
/// (`timeout` from now, at most [`MAX_LIFETIME`]) plus [`EXPIRY_MARGIN`].
pub fn claims(
    issuer: &str,
    execution: &execution::Model,
    audience: &[String],
    timeout: Duration,
) -> Value {
    let now = Utc::now().timestamp();
    let lifetime = timeout.min(MAX_LIFETIME) + EXPIRY_MARGIN;
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
    let mut jti = [0_u8; 16];
    // Uniqueness, not secrecy: a failed read leaves zeros and the execution id still differs.
    let _ = getrandom::fill(&mut jti);
    let audience = match audience {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "iss": issuer,
        "sub": format!("proc:{}", execution.proc_name),
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(lifetime),
        "jti": hex::encode(jti),
        "proc": execution.proc_name,
        "proc_version": execution.proc_version,
        "execution_id": execution.id.to_string(),
        "trigger": execution.trigger,
        "triggered_by": execution.user_email,
        "schedule_id": execution.schedule_id.map(|id| id.to_string()),
    })
}

/// A signed token for `execution`, starting now, for `audience`.
pub async fn token_for(
    state: &AppState,
    execution: &execution::Model,
    audience: &[String],
    timeout: Duration,
) -> Result<String, ApiError> {
    let keys = state.signing_keys().await?;
    keys.jwt(&claims(
        &state.server_info().public_url,
        execution,
        audience,
        timeout,
    ))
}
