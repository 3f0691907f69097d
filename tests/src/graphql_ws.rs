//! The one GraphQL-over-websocket client of the tests and the bench, speaking both
//! `graphql-transport-ws` (the modern protocol) and the legacy `graphql-ws`
//! (subscriptions-transport-ws).
//!
//! A background task reads the socket: it answers pings, hands the messages of an operation
//! started with [`WsClient::subscribe`] to that operation's channel, and queues every other
//! message (and the close) for the sequential methods the tests use ([`WsClient::next_message`],
//! [`WsClient::run`], [`WsClient::wait_closed`]). Tests can also send raw protocol messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one message before failing.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = Arc<Mutex<SplitSink<Socket, Message>>>;
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>;

/// The websocket subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`: subscribe / next / complete.
    TransportWs,
    /// `graphql-ws` (legacy): start / data / complete.
    LegacyWs,
}

impl Protocol {
    fn header(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::LegacyWs => "graphql-ws",
        }
    }
}

/// What an operation started with [`WsClient::subscribe`] delivers.
#[derive(Debug)]
pub enum Event {
    /// A `next` (or `data`) payload's `data`.
    Next(Value),
    /// The server completed it (`None`) or it failed (the message).
    End(Option<String>),
}

/// What the reader queues for the sequential methods.
enum Inbound {
    Message(Value),
    Closed(u16, String),
}

/// A connected, acknowledged GraphQL websocket.
pub struct WsClient {
    sink: Sink,
    routes: Routes,
    inbox: mpsc::UnboundedReceiver<Inbound>,
    protocol: Protocol,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for WsClient {
    /// Dropping the client closes the connection, as dropping a socket does.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl WsClient {
    /// Connects, sends `connection_init` with `payload` and waits for `connection_ack`.
    ///
    /// # Panics
    /// On any protocol failure, including a refused `connection_init`; this is a test helper.
    pub async fn connect(url: &str, protocol: Protocol, payload: Value) -> Self {
        match Self::try_connect(url, protocol, payload).await {
            Ok(client) => client,
            Err(refusal) => panic!("connection_init was refused: {refusal}"),
        }
    }

    /// A `graphql-transport-ws` connection without credentials, for the bench (which reports
    /// failures instead of panicking).
    ///
    /// # Errors
    /// When the socket cannot be opened or `connection_init` is refused.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::try_connect(url, Protocol::TransportWs, json!({}))
            .await
            .map_err(|refusal| anyhow::anyhow!("{url}: {refusal}"))
    }

    /// Like [`WsClient::connect`], but returns what the server answered instead of
    /// `connection_ack` (an error message, a close frame, a failed handshake) as `Err`.
    pub async fn try_connect(
        url: &str,
        protocol: Protocol,
        payload: Value,
    ) -> Result<Self, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.header()),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("websocket handshake: {e}"))?;
        let selected = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|value| value.to_str().ok());
        if selected != Some(protocol.header()) {
            return Err(format!("the server selected the subprotocol {selected:?}"));
        }
        let (mut sink, mut stream) = socket.split();
        let init = json!({ "type": "connection_init", "payload": payload });
        sink.send(Message::text(init.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(MESSAGE_TIMEOUT, stream.next())
            .await
            .map_err(|_| "no reply to connection_init".to_owned())?;
        match reply {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if message["type"] != "connection_ack" {
                    return Err(message.to_string());
                }
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
            other => return Err(format!("unexpected reply: {other:?}")),
        }
        let sink = Arc::new(Mutex::new(sink));
        let routes = Routes::default();
        let (queue, inbox) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read(stream, Arc::clone(&sink), Arc::clone(&routes), queue));
        Ok(Self {
            sink,
            routes,
            inbox,
            protocol,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    /// Sends any protocol message (e.g. `complete` or `stop` for an operation).
    ///
    /// # Panics
    /// When the socket is closed.
    pub async fn send_raw(&self, message: Value) {
        self.send(message).await.expect("send a websocket message");
    }

    async fn send(&self, message: Value) -> anyhow::Result<()> {
        let text = Message::text(message.to_string());
        Ok(self.sink.lock().await.send(text).await?)
    }

    fn start_message(&self, id: &str, query: &str, variables: Value) -> Value {
        self.start_with(id, json!({ "query": query, "variables": variables }))
    }

    fn start_with(&self, id: &str, payload: Value) -> Value {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        json!({ "id": id, "type": kind, "payload": payload })
    }

    /// Starts operation `id`; its messages come from [`WsClient::next_message`].
    pub async fn start(&self, id: &str, query: &str, variables: Value) {
        self.send_raw(self.start_message(id, query, variables))
            .await;
    }

    /// Starts operation `id` with a whole request `payload` (`query`, `variables`,
    /// `operationName`).
    pub async fn start_request(&self, id: &str, payload: Value) {
        self.send_raw(self.start_with(id, payload)).await;
    }

    /// Starts an operation whose messages arrive on the returned channel (any number may run
    /// at once); returns its id.
    ///
    /// # Errors
    /// When the socket is closed.
    pub async fn subscribe(
        &self,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<(String, mpsc::UnboundedReceiver<Event>)> {
        self.subscribe_request(json!({ "query": query, "variables": variables }))
            .await
    }

    /// [`WsClient::subscribe`] with a whole request `payload` (`query`, `variables`,
    /// `operationName`), such as a typed operation's `build_query`.
    ///
    /// # Errors
    /// When the socket is closed.
    pub async fn subscribe_request(
        &self,
        payload: Value,
    ) -> anyhow::Result<(String, mpsc::UnboundedReceiver<Event>)> {
        let id = format!("op-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (sender, receiver) = mpsc::unbounded_channel();
        self.routes.lock().await.insert(id.clone(), sender);
        self.send(self.start_with(&id, payload)).await?;
        Ok((id, receiver))
    }

    /// Stops operation `id`.
    pub async fn complete(&self, id: &str) {
        self.routes.lock().await.remove(id);
        let kind = match self.protocol {
            Protocol::TransportWs => "complete",
            Protocol::LegacyWs => "stop",
        };
        // A closed socket has stopped it already.
        let _ = self.send(json!({ "id": id, "type": kind })).await;
    }

    /// The next protocol message of an operation started with [`WsClient::start`] (or one
    /// without an id), skipping keep-alives.
    ///
    /// # Panics
    /// When nothing arrives within 10 s or the socket closes.
    pub async fn next_message(&mut self) -> Value {
        match tokio::time::timeout(MESSAGE_TIMEOUT, self.inbox.recv()).await {
            Ok(Some(Inbound::Message(message))) => message,
            Ok(Some(Inbound::Closed(code, reason))) => {
                panic!("the websocket closed ({code} {reason}) while a message was expected")
            }
            Ok(None) => panic!("the websocket reader stopped"),
            Err(_) => panic!("no websocket message within {MESSAGE_TIMEOUT:?}"),
        }
    }

    /// Waits up to `within` for the server to close the socket (skipping every other message)
    /// and returns the close code and reason; `None` when it stayed open.
    pub async fn wait_closed(&mut self, within: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .ok()?
            {
                Some(Inbound::Closed(code, reason)) => return Some((code, reason)),
                Some(Inbound::Message(_)) => {}
                None => return Some((1005, String::new())),
            }
        }
    }

    /// Runs `query` as operation `id` and returns every payload it produced, in order, up to
    /// its `complete`. Errors are returned as payloads of the form `{"errors": …}`.
    ///
    /// # Panics
    /// On a message of another operation or an unknown type.
    pub async fn run(&mut self, id: &str, query: &str, variables: Value) -> Vec<Value> {
        self.start(id, query, variables).await;
        self.payloads_until_complete(id).await
    }

    /// Like [`WsClient::run`], with a whole request `payload`.
    pub async fn run_request(&mut self, id: &str, payload: Value) -> Vec<Value> {
        self.start_request(id, payload).await;
        self.payloads_until_complete(id).await
    }

    async fn payloads_until_complete(&mut self, id: &str) -> Vec<Value> {
        let mut payloads = Vec::new();
        loop {
            let message = self.next_message().await;
            assert_eq!(
                message["id"], id,
                "message for another operation: {message}"
            );
            match message["type"].as_str() {
                Some("next" | "data") => payloads.push(message["payload"].clone()),
                Some("error") => payloads.push(json!({ "errors": message["payload"] })),
                Some("complete") => return payloads,
                _ => panic!("unexpected message: {message}"),
            }
        }
    }
}

/// Reads until the socket ends: pings answered, routed operations fed, the rest queued.
async fn read(
    mut stream: SplitStream<Socket>,
    sink: Sink,
    routes: Routes,
    queue: mpsc::UnboundedSender<Inbound>,
) {
    let mut closed = (1005, String::new());
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(Some(frame))) => {
                closed = (u16::from(frame.code), frame.reason.to_string());
                break;
            }
            Ok(Message::Close(None)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match message["type"].as_str() {
            Some("ping") => {
                let pong = Message::text(json!({ "type": "pong" }).to_string());
                let _ = sink.lock().await.send(pong).await;
                continue;
            }
            Some("ka" | "pong") => continue,
            _ => {}
        }
        let mut routes = routes.lock().await;
        let id = message["id"].as_str().unwrap_or_default();
        let Some(route) = routes.get(id) else {
            drop(routes);
            let _ = queue.send(Inbound::Message(message));
            continue;
        };
        let event = match message["type"].as_str() {
            // A `next` carrying errors has no data: the bench counts it as an error.
            Some("next" | "data") => Event::Next(message["payload"]["data"].clone()),
            Some("error") => Event::End(Some(message["payload"].to_string())),
            Some("complete") => Event::End(None),
            _ => continue,
        };
        let ended = matches!(event, Event::End(_));
        let _ = route.send(event);
        if ended {
            routes.remove(id);
        }
    }
    for (_, route) in routes.lock().await.drain() {
        let _ = route.send(Event::End(Some("connection closed".into())));
    }
    let _ = queue.send(Inbound::Closed(closed.0, closed.1));
}
