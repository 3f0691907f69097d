//! `POST /execution`, `GET /execution/{id}/status` and the `/execution/logs` websocket.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use axum::extract::{Path, RawQuery, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use proctor_entity::execution;
use proctor_entity::values::Trigger;
use proctor_schema::AppState;
use proctor_schema::auth::Caller;
use proctor_schema::error::ApiError;
use proctor_schema::executions::service::{ExecuteRequest, execute, get_execution};
use proctor_schema::executions::stream::follow_logs;
use proctor_schema::ports::authenticator::Credentials;
use proctor_schema::ports::event_bus::{Delivery, Event, Topic};
use serde::Deserialize;

use super::wire::{ExecutionResult, arg_values};
use super::{LegacyCaller, LegacyError, decode_object, json_response, parse_path_id};

/// What every failed `POST /execution` body starts with (v2's words).
const EXECUTE_FAILED: &str = "Failed to execute Job, Errors Detail ";
/// How often an idle log stream is pinged, so proxies keep the connection open.
const PING_EVERY: Duration = Duration::from_secs(30);

/// The `POST /execution` body (v2 also read `callback_url`, and ignored it).
#[derive(Deserialize)]
struct ExecuteBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    args: Option<BTreeMap<String, String>>,
}

/// Starts a run of a proc; 201 with the `ExecutionResult` at once, the run goes on.
pub async fn create(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    body: Bytes,
) -> Response {
    if let Err(refusal) = super::refuse_nul(&body) {
        return refusal.into_response();
    }
    let Some(body) = decode_object::<ExecuteBody>(&body) else {
        return LegacyError::bad_request("Failed to parse request body from CLI").into_response();
    };
    let Some(name) = body.name.filter(|name| !name.trim().is_empty()) else {
        return LegacyError::bad_request(format!("{EXECUTE_FAILED}name: the proc name is missing"))
            .into_response();
    };
    let request = ExecuteRequest {
        proc: name,
        args: arg_values(body.args),
        trigger: Trigger::Api,
        schedule_id: None,
    };
    match execute(&state, &caller, request).await {
        Ok(execution) => json_response(StatusCode::CREATED, &ExecutionResult::from(&execution)),
        // v2 answered 500 when a run's requirements were not met; the Go CLI shows 500 bodies
        // (and only a status line for 409), so the reason reaches the user this way.
        Err(ApiError::Conflict(message)) => LegacyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{EXECUTE_FAILED}{message}"),
        )
        .into_response(),
        Err(error) => LegacyError::from_api(&error, EXECUTE_FAILED).into_response(),
    }
}

/// Execution `id` if the caller may see it (ids beyond `i64::MAX` do not exist).
async fn find(state: &AppState, caller: &Caller, id: u64) -> Result<execution::Model, ApiError> {
    let not_found = || ApiError::NotFound {
        kind: "execution",
        key: id.to_string(),
    };
    let id = i64::try_from(id).map_err(|_| not_found())?;
    get_execution(state, caller, id).await
}

/// The execution's v2 status.
pub async fn status(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    Path(raw): Path<String>,
) -> Response {
    let id = match parse_path_id(&raw) {
        Ok(id) => id,
        Err(error) => return error.into_response(),
    };
    match find(&state, &caller, id).await {
        Ok(execution) => json_response(StatusCode::OK, &ExecutionResult::from(&execution)),
        Err(ApiError::NotFound { .. }) => {
            LegacyError::new(StatusCode::NOT_FOUND, "Execution context not Found").into_response()
        }
        Err(error) => LegacyError::from_api(&error, "").into_response(),
    }
}

/// The log websocket: one text frame per line (the stored ones, then live ones while the run
/// goes on), then a normal close (1000). Credentials and the caller's right to see the
/// execution are checked before the upgrade; an id that is missing or unknown is answered,
/// as in v2, by a close frame with the reason. Pages of other origins never get here: the
/// browser guard (`crate::guard`) refuses them for every route.
pub async fn logs(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return LegacyError::bad_request("Bad Request\nWebSocket Initializer Error")
            .into_response();
    };
    let Some(id) = query.as_deref().and_then(context_id) else {
        return close_at_once(
            upgrade,
            "No valid execution context id provided when fetching logs".to_owned(),
        );
    };
    match find(&state, &caller, id).await {
        Ok(execution) => {
            let watcher = Watcher {
                credentials: crate::credentials::from_headers(&headers),
                caller: Some(caller),
            };
            upgrade.on_upgrade(move |socket| stream_lines(state, execution, socket, watcher))
        }
        Err(ApiError::NotFound { .. }) => {
            close_at_once(upgrade, format!("No execution context found with id {id}"))
        }
        Err(error) => LegacyError::from_api(&error, "").into_response(),
    }
}

/// The `context_id` query parameter (v2 trimmed characters off the raw query instead, which
/// broke on any other parameter).
fn context_id(query: &str) -> Option<u64> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "context_id")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok())
}

/// A close reason within the 123 bytes a close frame holds.
fn forbidden(reason: String) -> Cow<'static, str> {
    Cow::Owned(crate::graphql_ws::close_reason(reason))
}

/// Upgrades and closes at once with a normal close and `reason`.
fn close_at_once(upgrade: WebSocketUpgrade, reason: String) -> Response {
    upgrade.on_upgrade(move |mut socket| async move {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: reason.into(),
            })))
            .await;
    })
}

/// Sends every log line of `execution` as a text frame until it has ended, then closes.
/// Who a log socket streams to, re-checked while it streams (like GraphQL websockets): a
/// revoked or changed caller is cut off with close code 4403.
struct Watcher {
    credentials: Credentials,
    caller: Option<Caller>,
}

async fn stream_lines(
    state: AppState,
    execution: execution::Model,
    socket: WebSocket,
    watcher: Watcher,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut recheck = tokio::time::interval(state.credentials_recheck());
    recheck.tick().await;
    let mut changes = state.event_bus().subscribe(Topic::Credentials);
    let reason = if execution.status.is_final() {
        "Finished Streaming log from repository"
    } else {
        "Finished Streaming log from pod"
    };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let close = match follow_logs(state.clone(), execution.id, 0).await {
        Err(error) => {
            error.log_if_internal();
            (
                close_code::ERROR,
                Cow::Borrowed("failed to stream the execution's log"),
            )
        }
        Ok(mut lines) => loop {
            tokio::select! {
                line = lines.next() => match line {
                    Some(Ok(line)) => {
                        if sink.send(Message::Text(line.line.into())).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        error.log_if_internal();
                        break (close_code::ERROR, Cow::Borrowed("failed to stream the execution's log"));
                    }
                    None => break (close_code::NORMAL, Cow::Borrowed(reason)),
                },
                message = incoming.next() => match message {
                    // The client went away (v2 ignored client frames; nothing else is expected).
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                }
                _ = recheck.tick() => {
                    if let Some(reason) = crate::graphql_ws::recheck(&state, watcher.credentials.clone(), &watcher.caller).await {
                        break (crate::graphql_ws::CLOSE_FORBIDDEN, forbidden(reason));
                    }
                }
                change = changes.next() => {
                    if matches!(change, Some(Delivery::Event(Event::CredentialsChanged { .. }) | Delivery::Missed(_)))
                        && let Some(reason) = crate::graphql_ws::recheck(&state, watcher.credentials.clone(), &watcher.caller).await
                    {
                        break (crate::graphql_ws::CLOSE_FORBIDDEN, forbidden(reason));
                    }
                }
            }
        },
    };
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close.0,
            reason: close.1.into_owned().into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_id_parameter_is_read_wherever_it_is() {
        assert_eq!(context_id("context_id=42"), Some(42));
        assert_eq!(context_id("a=1&context_id=7&b=2"), Some(7));
        assert_eq!(context_id("context_id=x"), None);
        assert_eq!(context_id("context_id=-1"), None);
        assert_eq!(context_id(""), None);
    }
}
