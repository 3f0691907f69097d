//! The one error type of the API, with stable codes for GraphQL `extensions.code` and HTTP.

use async_graphql::ErrorExtensions;

/// Every error a resolver, REST handler or domain service returns to a caller.
///
/// The `code` of each variant is part of the API contract and never changes. Internal errors
/// are logged once, when they are turned into a response, and reach the caller only as
/// "internal error" so no database detail or secret can leak.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid credentials were presented; the message says what was wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The named object does not exist.
    #[error("{kind} {key:?} not found")]
    NotFound {
        /// Kind of object, e.g. `proc`.
        kind: &'static str,
        /// What was looked up.
        key: String,
    },
    /// An input value is invalid; `field` names it so the caller can fix it.
    #[error("{field}: {message}")]
    BadUserInput {
        /// Path of the offending input, e.g. `input.args[0].name`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The request conflicts with the current state (e.g. deleting a running proc).
    #[error("{0}")]
    Conflict(String),
    /// The request asks for more than the server hands out at once (lines or bytes per
    /// response, operations per connection); the message says which limit and how to page.
    #[error("{0}")]
    LimitExceeded(String),
    /// The server cannot do this right now (it is shutting down); retrying later, or on
    /// another replica, works.
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected: database failures, broken invariants.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The error one of several waiters got (a shared cache or batch load): the error itself
    /// when this was the last holder, else an internal error with the same cause.
    pub fn unshared(shared: std::sync::Arc<ApiError>) -> ApiError {
        match std::sync::Arc::try_unwrap(shared) {
            Ok(error) => error,
            Err(shared) => match shared.as_ref() {
                ApiError::Internal(cause) => ApiError::Internal(anyhow::anyhow!("{cause:#}")),
                other => ApiError::Internal(anyhow::anyhow!("{other}")),
            },
        }
    }

    /// Missing credentials: what to send.
    pub fn credentials_required() -> Self {
        Self::Unauthenticated(
            "authentication required: send Access-Token and Email-Id headers, or Authorization: \
             Bearer <token>"
                .to_owned(),
        )
    }

    /// Shorthand for [`ApiError::BadUserInput`]. The field path and the message are capped
    /// ([`cap_echo`]), so an input of a megabyte is never echoed back whole.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field: cap_echo(field.into(), MAX_ECHOED_FIELD),
            message: cap_echo(message.into(), MAX_ECHOED_MESSAGE),
        }
    }

    /// The stable machine-readable code (GraphQL `extensions.code`, REST error bodies).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::LimitExceeded(_) => "LIMIT_EXCEEDED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// Logs an internal error with its whole cause chain; the single place that does so.
    pub fn log_if_internal(&self) {
        if let Self::Internal(source) = self {
            tracing::error!(error.cause_chain = ?source, "internal error while serving a request");
        }
    }
}

/// Longest field path an error names.
const MAX_ECHOED_FIELD: usize = 200;
/// Longest error message (they may quote what the caller sent).
pub const MAX_ECHOED_MESSAGE: usize = 1_000;

/// `text` cut to at most `max` bytes on a character boundary, saying how much was left out.
pub fn cap_echo(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("… ({total} bytes, cut)"));
    text
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Internal(anyhow::Error::new(error).context("database operation failed"))
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        self.log_if_internal();
        async_graphql::Error::new(self.to_string()).extend_with(|_, extensions| {
            extensions.set("code", self.code());
            if let Self::BadUserInput { field, .. } = self {
                extensions.set("field", field.as_str());
            }
        })
    }
}

/// Turns a domain result into a GraphQL result that carries the stable error code; resolvers
/// end in `.gql()`.
pub trait ApiResultExt<T> {
    /// The GraphQL form of this result.
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> ApiResultExt<T> for Result<T, ApiError> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|error| error.extend())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_expose_their_source() {
        let error = ApiError::Internal(anyhow::anyhow!("password=hunter2 rejected by db"));
        let graphql = error.extend();
        assert_eq!(graphql.message, "internal error");
        let extensions = graphql.extensions.expect("extensions are set");
        assert_eq!(
            extensions.get("code"),
            Some(&async_graphql::Value::from("INTERNAL"))
        );
    }

    #[test]
    fn bad_input_names_the_field_in_message_and_extensions() {
        let graphql = ApiError::bad_input("input.name", "must be a DNS label").extend();
        assert_eq!(graphql.message, "input.name: must be a DNS label");
        let extensions = graphql.extensions.expect("extensions are set");
        assert_eq!(
            extensions.get("field"),
            Some(&async_graphql::Value::from("input.name"))
        );
        assert_eq!(
            extensions.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
    }

    #[test]
    fn echoed_input_is_capped() {
        let huge = "é".repeat(450_000);
        let error = ApiError::bad_input(format!("args.{huge}"), format!("{huge:?} is wrong"));
        let message = error.to_string();
        assert!(message.len() < 1_400, "{}", message.len());
        assert!(message.contains("bytes, cut"));
        assert_eq!(cap_echo("short".into(), 10), "short");
    }

    #[test]
    fn codes_are_stable() {
        let cases = [
            (ApiError::Unauthenticated("who?".into()), "UNAUTHENTICATED"),
            (ApiError::Forbidden("no".into()), "FORBIDDEN"),
            (
                ApiError::NotFound {
                    kind: "proc",
                    key: "x".into(),
                },
                "NOT_FOUND",
            ),
            (ApiError::bad_input("f", "m"), "BAD_USER_INPUT"),
            (ApiError::Conflict("busy".into()), "CONFLICT"),
            (ApiError::LimitExceeded("big".into()), "LIMIT_EXCEEDED"),
            (ApiError::Internal(anyhow::anyhow!("x")), "INTERNAL"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
        }
    }
}
