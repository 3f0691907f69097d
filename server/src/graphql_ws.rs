//! GraphQL over websockets (`graphql-transport-ws` and the legacy `graphql-ws`), with the
//! checks a long-lived connection needs on top of async-graphql's protocol engine.
//!
//! Invariants:
//! - Credentials are never trusted for a connection's life. They are checked again when each
//!   new operation starts, every `PROCTOR_WS_REVALIDATE_SECONDS` (at most 30 s), and at once
//!   when any replica announces that the user's tokens or groups changed
//!   ([`Event::CredentialsChanged`]). If the caller is no longer who they were (token revoked
//!   or expired, user gone, groups changed), the connection is closed with code 4403 and every
//!   operation on it ends; the client reconnects and gets its current rights.
//! - A connection holds at most `PROCTOR_MAX_SUBSCRIPTIONS_PER_CONNECTION` operations and the
//!   server at most `PROCTOR_MAX_SUBSCRIPTIONS`. An operation beyond either gets an `error`
//!   message for its id; the connection stays usable.
//! - An operation counts from its `subscribe`/`start` until the server sends `complete` for
//!   its id (which async-graphql does for every operation that ends, stopped or not), or the
//!   connection closes.
//! - graphql-transport-ws is held to its close codes where async-graphql's engine is looser:
//!   4400 for a message that is not one of the protocol's, 4401 for `subscribe` before
//!   `connection_ack`, 4403 when `connection_init` is refused, 4408 when it does not come
//!   within `PROCTOR_WS_INIT_TIMEOUT_SECONDS`, 4409 for an id already in use, 4429 for a
//!   second `connection_init` (the engine's).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{WebSocket as GraphQLWebSocket, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use proctor_schema::auth::{Caller, RequestAuth};
use proctor_schema::ports::authenticator::Credentials;
use proctor_schema::ports::event_bus::{Delivery, Event, Topic};
use proctor_schema::{ApiError, AppState, ProctorSchema};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use crate::credentials;

/// Largest `subscribe`/`start` message: an open operation keeps its request (query and
/// variables) for its whole life, so this times the operation caps bounds what they hold.
pub const MAX_OPERATION_BYTES: usize = 16 * 1024;

/// Client messages queued for the protocol engine at most.
const ENGINE_QUEUE: usize = 64;

/// The close code of a connection whose caller lost their rights.
pub const CLOSE_FORBIDDEN: u16 = 4403;

/// Limits shared by every websocket of a server.
pub struct WsLimits {
    /// Operations one connection may hold.
    pub per_connection: usize,
    /// Operations the server may hold.
    pub server_wide: usize,
    /// Operations open right now, server-wide.
    pub open: AtomicUsize,
    /// How often credentials are checked again.
    pub revalidate: Duration,
    /// How long a connection may wait before `connection_init`.
    pub init_timeout: Duration,
    /// Largest message a client may send (the HTTP body limit).
    pub max_message: usize,
}

/// Who the connection authenticated as at `connection_init`.
#[derive(Clone)]
struct Identity {
    credentials: Credentials,
    caller: Option<Caller>,
}

/// What a client message means for the limits and checks.
enum ClientKind {
    Init,
    Start(String),
    Stop(String),
    Other,
}

/// Why `text` is not a graphql-transport-ws client message, if it is not one.
fn transport_ws_problem(text: &str) -> Option<String> {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return Some("Invalid message: not a JSON object".to_owned());
    };
    let is_object = |key: &str| message.get(key).is_some_and(Value::is_object);
    let optional_object = |key: &str| {
        message
            .get(key)
            .is_none_or(|value| value.is_object() || value.is_null())
    };
    let id_ok = message
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty());
    match message.get("type").and_then(Value::as_str) {
        Some("connection_init" | "ping" | "pong") if optional_object("payload") => None,
        Some("subscribe")
            if id_ok
                && is_object("payload")
                && message["payload"]
                    .get("query")
                    .is_some_and(Value::is_string)
                && message["payload"]
                    .get("operationName")
                    .is_none_or(|name| name.is_string() || name.is_null())
                && ["variables", "extensions"].iter().all(|key| {
                    message["payload"]
                        .get(*key)
                        .is_none_or(|value| value.is_object() || value.is_null())
                }) =>
        {
            None
        }
        Some("complete") if id_ok => None,
        Some(kind) => Some(format!(
            "Invalid message: a {kind:?} message of another shape or kind"
        )),
        None => Some("Invalid message: no type".to_owned()),
    }
}

fn classify(text: &str) -> ClientKind {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return ClientKind::Other;
    };
    match (
        message.get("type").and_then(Value::as_str),
        message.get("id"),
    ) {
        (Some("connection_init"), _) => ClientKind::Init,
        (Some("subscribe" | "start"), Some(Value::String(id))) => ClientKind::Start(id.clone()),
        (Some("complete" | "stop"), Some(Value::String(id))) => ClientKind::Stop(id.clone()),
        _ => ClientKind::Other,
    }
}

/// The operations one connection holds, counted against its own cap and the server's. The
/// server-wide count is given back when an operation completes and, for whatever is still
/// open, when this is dropped (however the connection ends).
struct Operations {
    open: HashSet<String>,
    /// Ids the client stopped whose `complete` the engine has yet to send (the id is free for
    /// reuse at once, as graphql-transport-ws says).
    stopping: HashMap<String, usize>,
    limits: Arc<WsLimits>,
}

impl Operations {
    fn new(limits: Arc<WsLimits>) -> Self {
        Self {
            open: HashSet::new(),
            stopping: HashMap::new(),
            limits,
        }
    }

    /// Counts operation `id`, or says which limit it would pass.
    fn try_open(&mut self, id: &str) -> Result<(), String> {
        if self.open.len() >= self.limits.per_connection {
            return Err(format!(
                "this connection already has {} operations open (the most one connection may \
                 hold, PROCTOR_MAX_SUBSCRIPTIONS_PER_CONNECTION); complete one first or open \
                 another connection",
                self.open.len()
            ));
        }
        if self.limits.open.fetch_add(1, Ordering::AcqRel) >= self.limits.server_wide {
            self.limits.open.fetch_sub(1, Ordering::AcqRel);
            return Err(format!(
                "the server holds the most websocket operations it may ({}, \
                 PROCTOR_MAX_SUBSCRIPTIONS); try again later",
                self.limits.server_wide
            ));
        }
        self.open.insert(id.to_owned());
        Ok(())
    }

    /// The client stopped `id`.
    fn stopped(&mut self, id: &str) {
        if self.open.remove(id) {
            self.limits.open.fetch_sub(1, Ordering::AcqRel);
            *self.stopping.entry(id.to_owned()).or_default() += 1;
        }
    }

    /// The engine completed `id`.
    fn completed(&mut self, id: &str) {
        if let Some(pending) = self.stopping.get_mut(id) {
            *pending -= 1;
            if *pending == 0 {
                self.stopping.remove(id);
            }
        } else if self.open.remove(id) {
            self.limits.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Operations {
    fn drop(&mut self) {
        self.limits
            .open
            .fetch_sub(self.open.len(), Ordering::AcqRel);
    }
}

/// The id of a server `complete` message.
fn completed_id(text: &str) -> Option<String> {
    // Cheap pre-check: most server messages are `next` payloads, possibly large.
    if !text.starts_with("{\"type\":\"complete\"") {
        return None;
    }
    let message: Value = serde_json::from_str(text).ok()?;
    message.get("id")?.as_str().map(str::to_owned)
}

/// The protocol's error message for operation `id`.
fn operation_error(protocol: WebSocketProtocols, id: &str, message: &str, code: &str) -> String {
    let error = json!({ "message": message, "extensions": { "code": code } });
    match protocol {
        WebSocketProtocols::GraphQLWS => {
            json!({ "type": "error", "id": id, "payload": [error] }).to_string()
        }
        WebSocketProtocols::SubscriptionsTransportWS => {
            json!({ "type": "error", "id": id, "payload": error }).to_string()
        }
    }
}

/// Serves one upgraded connection until either side closes it.
pub async fn serve(
    socket: WebSocket,
    schema: ProctorSchema,
    protocol: WebSocketProtocols,
    state: AppState,
    from_headers: Credentials,
    limits: Arc<WsLimits>,
) {
    let identity: Arc<Mutex<Option<Identity>>> = Arc::new(Mutex::new(None));
    let (mut sink, mut source) = socket.split();
    // Client messages wait here for the engine. The socket is read only while there is room,
    // so a client that floods messages is slowed down rather than buffered without bound,
    // and forwarding never waits on an engine that this loop itself must poll.
    let (to_engine, engine_input) = mpsc::channel::<String>(ENGINE_QUEUE);
    let engine_input = Box::pin(futures::stream::unfold(
        engine_input,
        |mut input| async move { input.recv().await.map(|message| (message, input)) },
    ));
    let init_identity = Arc::clone(&identity);
    let init_state = state.clone();
    let mut engine = GraphQLWebSocket::new(schema, engine_input, protocol).on_connection_init(
        move |payload| async move {
            let credentials = credentials::from_payload(&payload, from_headers);
            let auth = RequestAuth::new(credentials.clone());
            let caller = auth
                .resolve(&init_state)
                .await
                .map_err(|error| async_graphql::Error::new(error.to_string()))?;
            *init_identity.lock().await = Some(Identity {
                credentials,
                caller,
            });
            let mut data = Data::default();
            data.insert(auth);
            Ok(data)
        },
    );

    let mut changes = state.event_bus().subscribe(Topic::Credentials);
    let mut recheck = tokio::time::interval(limits.revalidate);
    recheck.tick().await;
    let mut operations = Operations::new(Arc::clone(&limits));
    let transport_ws = protocol == WebSocketProtocols::GraphQLWS;
    let (mut initialised, mut acknowledged) = (false, false);
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    tokio::pin!(init_deadline);

    let close = loop {
        tokio::select! {
            () = &mut init_deadline, if !initialised => {
                break Some((4408, "Connection initialisation timeout".to_owned()));
            }
            incoming = source.next(), if to_engine.capacity() > 0 => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Binary(bytes))) => match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => text,
                        Err(_) => break Some((1003, "binary frames must hold UTF-8 JSON".to_owned())),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                };
                if transport_ws && let Some(problem) = transport_ws_problem(&text) {
                    break Some((4400, problem));
                }
                match classify(&text) {
                    ClientKind::Init => initialised = true,
                    ClientKind::Start(_) if transport_ws && !acknowledged => {
                        break Some((4401, "Unauthorized".to_owned()));
                    }
                    ClientKind::Start(id) => {
                        if operations.open.contains(&id) {
                            break Some((4409, format!("Subscriber for {id} already exists")));
                        }
                        if let Some(reason) = still_valid(&identity, &state).await {
                            break Some((CLOSE_FORBIDDEN, reason));
                        }
                        let opened = if text.len() > MAX_OPERATION_BYTES {
                            Err(format!(
                                "an operation may be at most {} KiB (query and variables); \
                                 this one is {} bytes",
                                MAX_OPERATION_BYTES / 1024,
                                text.len()
                            ))
                        } else {
                            operations.try_open(&id)
                        };
                        if let Err(message) = opened {
                            let error = operation_error(protocol, &id, &message, "LIMIT_EXCEEDED");
                            if sink.send(Message::Text(error.into())).await.is_err() {
                                break None;
                            }
                            continue;
                        }
                    }
                    ClientKind::Stop(id) => operations.stopped(&id),
                    ClientKind::Other => {}
                }
                if to_engine.try_send(text).is_err() {
                    break None;
                }
            }
            outgoing = engine.next() => match outgoing {
                Some(WsMessage::Text(text)) => {
                    if let Some(id) = completed_id(&text) {
                        operations.completed(&id);
                    }
                    if text.starts_with("{\"type\":\"connection_ack\"") {
                        acknowledged = true;
                    }
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                // The engine closes with 1002 only when connection_init was refused (this loop
                // turns away malformed messages itself): the protocol's code for that is 4403.
                Some(WsMessage::Close(1002, reason)) if transport_ws && !acknowledged => {
                    break Some((CLOSE_FORBIDDEN, format!("Forbidden: {reason}")));
                }
                Some(WsMessage::Close(code, reason)) => break Some((code, reason)),
                None => break Some((1000, String::new())),
            },
            _ = recheck.tick() => {
                if let Some(reason) = still_valid(&identity, &state).await {
                    break Some((CLOSE_FORBIDDEN, reason));
                }
            }
            change = changes.next() => {
                let concerns_us = match &change {
                    Some(Delivery::Event(Event::CredentialsChanged { email })) => {
                        concerns(&identity, email.as_deref()).await
                    }
                    // Missed events: check rather than guess.
                    Some(Delivery::Missed(_)) => true,
                    Some(Delivery::Event(_)) => false,
                    None => {
                        changes = state.event_bus().subscribe(Topic::Credentials);
                        false
                    }
                };
                if concerns_us && let Some(reason) = still_valid(&identity, &state).await {
                    break Some((CLOSE_FORBIDDEN, reason));
                }
            }
        }
    };
    drop(operations);
    if let Some((code, reason)) = close {
        if code == CLOSE_FORBIDDEN {
            tracing::info!(%reason, "closed a websocket whose caller lost their rights");
        }
        let reason = close_reason(reason);
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
}

/// `reason` cut to fit a close frame (at most 123 bytes), on a character boundary.
pub fn close_reason(mut reason: String) -> String {
    reason.truncate(reason.floor_char_boundary(120));
    reason
}

/// Whether a change announced for `email` may concern this connection.
async fn concerns(identity: &Mutex<Option<Identity>>, email: Option<&str>) -> bool {
    let Some(email) = email else {
        return true;
    };
    match &*identity.lock().await {
        Some(Identity {
            caller: Some(caller),
            credentials,
        }) => {
            caller
                .email
                .as_deref()
                .is_none_or(|own| own.eq_ignore_ascii_case(email))
                || credentials
                    .email
                    .as_deref()
                    .is_some_and(|own| own.eq_ignore_ascii_case(email))
        }
        _ => false,
    }
}

/// `None` while the connection's credentials still give the caller it started with; else
/// why not. Before `connection_init` there is nothing to check. When the check itself fails
/// (the database or identity service is away), the connection stays and is checked again at
/// the next occasion: an outage must not look like a revocation to every client.
async fn still_valid(identity: &Mutex<Option<Identity>>, state: &AppState) -> Option<String> {
    let identity = identity.lock().await.clone()?;
    recheck(state, identity.credentials, &identity.caller).await
}

/// `None` while `credentials` still give the caller `original`; else why not (a revoked,
/// expired or changed user). Internal failures count as "still valid until the next check".
pub async fn recheck(
    state: &AppState,
    credentials: Credentials,
    original: &Option<Caller>,
) -> Option<String> {
    if !state.auth_enabled() {
        return None;
    }
    match RequestAuth::new(credentials).resolve(state).await {
        Ok(current) if current == *original => None,
        Ok(_) => Some("Forbidden: your groups or identity changed; reconnect".to_owned()),
        Err(ApiError::Internal(error)) => {
            tracing::warn!(
                error = %format!("{error:#}"),
                "cannot re-check a websocket's credentials now; keeping it until the next check"
            );
            None
        }
        Err(error) => Some(format!("Forbidden: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_classified() {
        assert!(matches!(
            classify(r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#),
            ClientKind::Start(id) if id == "1"
        ));
        assert!(matches!(
            classify(r#"{"type":"start","id":"x","payload":{}}"#),
            ClientKind::Start(id) if id == "x"
        ));
        assert!(matches!(
            classify(r#"{"type":"complete","id":"1"}"#),
            ClientKind::Stop(id) if id == "1"
        ));
        assert!(matches!(
            classify(r#"{"type":"stop","id":"2"}"#),
            ClientKind::Stop(id) if id == "2"
        ));
        assert!(matches!(classify(r#"{"type":"ping"}"#), ClientKind::Other));
        assert!(matches!(classify("not json"), ClientKind::Other));
        assert!(matches!(
            classify(r#"{"type":"connection_init"}"#),
            ClientKind::Init
        ));
    }

    #[test]
    fn transport_ws_messages_are_checked_for_their_shape() {
        for valid in [
            r#"{"type":"connection_init"}"#,
            r#"{"type":"connection_init","payload":{"token":"x"}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"pong","payload":null}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }"}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","operationName":null,"variables":null,"extensions":null}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","operationName":"A","variables":{"x":1},"extensions":{}}}"#,
            r#"{"type":"complete","id":"1"}"#,
        ] {
            assert_eq!(transport_ws_problem(valid), None, "{valid}");
        }
        for invalid in [
            "not json",
            "[]",
            r#"{"id":"1"}"#,
            r#"{"type":"start","id":"1","payload":{"query":"{ a }"}}"#,
            r#"{"type":"subscribe","payload":{"query":"{ a }"}}"#,
            r#"{"type":"subscribe","id":"1","payload":{}}"#,
            r#"{"type":"subscribe","id":"","payload":{"query":"{ a }"}}"#,
            r#"{"type":"complete"}"#,
            r#"{"type":"connection_init","payload":"token"}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","operationName":5}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","variables":[]}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","extensions":"x"}}"#,
        ] {
            assert!(transport_ws_problem(invalid).is_some(), "{invalid}");
        }
    }

    #[test]
    fn server_completions_are_recognised() {
        assert_eq!(
            completed_id(r#"{"type":"complete","id":"7"}"#).as_deref(),
            Some("7")
        );
        assert_eq!(
            completed_id(r#"{"type":"next","id":"7","payload":{}}"#),
            None
        );
    }
}
