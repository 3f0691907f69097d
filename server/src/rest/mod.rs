//! The REST shim: the Proctor v2 routes (`/ping`, `/metadata`, `/secret`, `/execution`,
//! `/execution/{id}/status`, the `/execution/logs` websocket, `/schedule[/{id}]`) with the
//! statuses, bodies and headers the Go CLI v2.0.8 relies on (`proctor-v2-spec.md` §1 and §6).
//!
//! Handlers translate between the v2 wire format and the domain services the GraphQL resolvers
//! call; rules live in the services. Errors are plain text, as v2 wrote them, because the Go CLI
//! prints the bodies of 400 and 500 answers verbatim. Where this shim answers differently from
//! v2 on purpose, the book's REST chapter (`docs/src/rest-and-v2.md`) lists the differences.

mod executions;
pub mod metadata;
mod procs;
mod schedules;
pub mod version;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use proctor_schema::AppState;
use proctor_schema::auth::{Caller, RequestAuth};
use proctor_schema::error::ApiError;
use serde::de::DeserializeOwned;

use crate::credentials;
use version::ClientVersion;

/// The v2 routes, checked against `minimum` client version (when configured) before anything
/// else, as v2 did; unmatched paths and methods are not checked.
pub fn router(state: AppState, minimum: Option<ClientVersion>) -> Router {
    Router::new()
        .route("/ping", any(|| async { "pong" }))
        .route("/execution", post(executions::create))
        .route("/execution/logs", get(executions::logs))
        .route("/execution/{id}/status", get(executions::status))
        .route("/metadata", get(procs::list).post(procs::apply))
        .route("/secret", post(procs::set_secrets))
        .route("/schedule", get(schedules::list).post(schedules::create))
        .route(
            "/schedule/{id}",
            get(schedules::get).delete(schedules::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            minimum.map(Arc::new),
            version::check,
        ))
        .with_state(state)
}

/// A v2 error answer: a status and a plain-text body without a trailing newline.
#[derive(Debug)]
pub struct LegacyError {
    status: StatusCode,
    body: String,
}

impl LegacyError {
    /// Any status with `body`.
    fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }

    /// 400 with `body`.
    fn bad_request(body: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, body)
    }

    /// The answer to a domain error: its status (401, 403, 404, 400, 409) and message after
    /// `prefix`; internal errors are logged here and answered with v2's "Something went
    /// wrong".
    fn from_api(error: &ApiError, prefix: &str) -> Self {
        if let ApiError::Internal(_) = error {
            error.log_if_internal();
            return Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{prefix}Something went wrong"),
            );
        }
        let status = http_status(error);
        Self::new(status, format!("{prefix}{error}"))
    }
}

/// The HTTP status a domain error is answered with on the REST routes.
pub fn http_status(error: &ApiError) -> StatusCode {
    match error {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
        ApiError::BadUserInput { .. } => StatusCode::BAD_REQUEST,
        ApiError::Conflict(_) => StatusCode::CONFLICT,
        ApiError::LimitExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.body,
        )
            .into_response()
    }
}

/// The caller of a v2 route, from the `Access-Token` and `Email-Id` headers (or a bearer
/// token). With auth on, missing or wrong credentials are a 401 before the handler runs; with
/// auth off, `Email-Id` is kept to attribute the work.
pub struct LegacyCaller(pub Caller);

impl FromRequestParts<AppState> for LegacyCaller {
    type Rejection = LegacyError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let credentials = credentials::from_headers(&parts.headers);
        // v2 required both headers; a token without its e-mail is refused the same way.
        if state.auth_enabled() && credentials.access_token.is_some() && credentials.email.is_none()
        {
            return Err(LegacyError::new(
                StatusCode::UNAUTHORIZED,
                "authentication required: send the Email-Id header with the Access-Token",
            ));
        }
        RequestAuth::new(credentials)
            .require(state)
            .await
            .map(LegacyCaller)
            .map_err(|error| LegacyError::from_api(&error, ""))
    }
}

/// Reads the first JSON value of a body, as Go's `json.Decoder` did (text after it is
/// ignored; an empty body or a type mismatch is an error).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .next()
        .and_then(Result::ok)
}

/// [`decode`] for a body that must be a JSON object (serde would also fill a struct from an
/// array, which Go refused).
fn decode_object<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    decode::<serde_json::Value>(body)
        .filter(serde_json::Value::is_object)
        .and_then(|value| serde_json::from_value(value).ok())
}

/// 400 naming the field when a JSON body holds a NUL character anywhere (Postgres cannot
/// store one; GraphQL refuses them the same way).
fn refuse_nul(body: &[u8]) -> Result<(), LegacyError> {
    let Some(value) = decode::<serde_json::Value>(body) else {
        return Ok(());
    };
    match proctor_schema::limits::nul_path_json(&value, "") {
        Some(path) => Err(LegacyError::bad_request(format!(
            "{path}: must not contain NUL characters (\\u0000)"
        ))),
        None => Ok(()),
    }
}

/// JSON with `status`.
fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => LegacyError::from_api(
            &ApiError::Internal(anyhow::Error::new(error).context("encoding a v2 response")),
            "",
        )
        .into_response(),
    }
}

/// Parses a v2 id path segment (an unsigned 64-bit number). Ids beyond `i64::MAX` cannot
/// exist here; they are reported as not found by the caller.
fn parse_path_id(raw: &str) -> Result<u64, LegacyError> {
    raw.parse::<u64>()
        .map_err(|_| LegacyError::bad_request("Failed to translate path parameter to uint64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status() {
        let cases = [
            (ApiError::Unauthenticated("who?".into()), 401),
            (ApiError::Forbidden("no".into()), 403),
            (
                ApiError::NotFound {
                    kind: "proc",
                    key: "x".into(),
                },
                404,
            ),
            (ApiError::bad_input("f", "m"), 400),
            (ApiError::Conflict("busy".into()), 409),
            (ApiError::LimitExceeded("big".into()), 413),
            (ApiError::Unavailable("later".into()), 503),
            (ApiError::Internal(anyhow::anyhow!("x")), 500),
        ];
        for (error, status) in cases {
            assert_eq!(http_status(&error).as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn decode_reads_the_first_json_value_like_go() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Body {
            name: String,
        }
        assert_eq!(
            decode::<Body>(br#"{"name":"a","extra":1} trailing"#),
            Some(Body { name: "a".into() })
        );
        assert_eq!(decode::<Body>(b""), None);
        assert_eq!(decode::<Body>(br#"{"name":7}"#), None);
        assert_eq!(decode::<Body>(b"test"), None);
        assert_eq!(decode::<Body>(br#"["a"]"#), Some(Body { name: "a".into() }));
        assert_eq!(
            decode_object::<Body>(br#"["a"]"#),
            None,
            "Go refused arrays"
        );
        assert_eq!(
            decode_object::<Body>(br#"{"name":"a"} {"#),
            Some(Body { name: "a".into() })
        );
    }
}
