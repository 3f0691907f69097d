//! Per-run identity tokens: a proc with `identity: { audience: [...] }` gets, in each run,
//! `PROCTOR_ID_TOKEN`, a JWT signed with the server's ES256 key ([`crate::signing`]) that a
//! cloud's workload identity federation (AWS, GCP, Azure, Vault) can trust the way it trusts
//! CI jobs, through `/.well-known/openid-configuration` and `/.well-known/jwks.json`.
//!
//! Invariants: the token is handed to the run as a secret (masked in its output like one, and
//! on Kubernetes kept in the run's Secret); it expires at the run's deadline plus
//! [`EXPIRY_MARGIN`]; its claims name the run exactly (`sub` is `proc:<name>`).

use std::time::Duration;

use chrono::Utc;
use proctor_entity::{execution, proc};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// The variable the token is passed in.
pub const TOKEN_VARIABLE: &str = "PROCTOR_ID_TOKEN";
/// How long a token outlives the run's deadline (clock skew, a final upload).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The claims of `execution`'s token, valid from `now` until `deadline` plus the margin.
pub fn claims(
    issuer: &str,
    proc: &proc::Model,
    execution: &execution::Model,
    audience: &[String],
    deadline: Duration,
) -> Value {
    let now = Utc::now().timestamp();
    let lifetime = i64::try_from((deadline + EXPIRY_MARGIN).as_secs()).unwrap_or(i64::MAX / 2);
    let mut jti = [0_u8; 16];
    // Uniqueness, not secrecy: a failed read leaves zeros and the execution id still differs.
    let _ = getrandom::fill(&mut jti);
    let audience = match audience {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "iss": issuer,
        "sub": format!("proc:{}", proc.name),
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(lifetime),
        "jti": hex::encode(jti),
        "proc": proc.name,
        "proc_version": execution.proc_version,
        "execution_id": execution.id.to_string(),
        "trigger": execution.trigger,
        "triggered_by": execution.user_email,
        "schedule_id": execution.schedule_id.map(|id| id.to_string()),
    })
}

/// The token for `execution` when its proc asks for one.
pub async fn token_for(
    state: &AppState,
    proc: &proc::Model,
    execution: &execution::Model,
) -> Result<Option<String>, ApiError> {
    let Some(identity) = &proc.identity else {
        return Ok(None);
    };
    let deadline = proc
        .timeout_seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map_or(
            state.runner().settings().default_timeout,
            Duration::from_secs,
        );
    let keys = state.signing_keys().await?;
    let claims = claims(
        &state.server_info().public_url,
        proc,
        execution,
        &identity.audience,
        deadline,
    );
    keys.jwt(&claims).map(Some)
}
