//! A minimal GraphQL-over-websocket client for tests, speaking both `graphql-transport-ws`
//! (the modern protocol) and the legacy `graphql-ws` (subscriptions-transport-ws).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one message before failing.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A connected, acknowledged GraphQL websocket.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: Protocol,
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

    /// Like [`WsClient::connect`], but returns what the server answered instead of
    /// `connection_ack` (an error message or a close frame) as `Err`.
    ///
    /// # Panics
    /// When the handshake itself fails.
    pub async fn try_connect(
        url: &str,
        protocol: Protocol,
        payload: Value,
    ) -> Result<Self, String> {
        let mut request = url.into_client_request().expect("websocket URL");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.header()),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket handshake");
        assert_eq!(
            response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|value| value.to_str().ok()),
            Some(protocol.header()),
            "the server must select the requested subprotocol"
        );
        let mut client = Self { socket, protocol };
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let reply = tokio::time::timeout(MESSAGE_TIMEOUT, client.socket.next())
            .await
            .map_err(|_| "no reply to connection_init".to_owned())?;
        match reply {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if message["type"] == "connection_ack" {
                    Ok(client)
                } else {
                    Err(message.to_string())
                }
            }
            Some(Ok(Message::Close(frame))) => Err(format!("closed: {frame:?}")),
            other => Err(format!("unexpected reply: {other:?}")),
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send a websocket message");
    }

    /// Sends any protocol message (e.g. `complete` or `stop` for an operation).
    pub async fn send_raw(&mut self, message: Value) {
        self.send(message).await;
    }

    /// Starts operation `id`.
    pub async fn start(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        self.send(json!({
            "id": id,
            "type": kind,
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    /// The next protocol message, answering pings and skipping keep-alives.
    ///
    /// # Panics
    /// When nothing arrives within 10 s or the socket closes.
    pub async fn next_message(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(MESSAGE_TIMEOUT, self.socket.next())
                .await
                .expect("a websocket message within the timeout")
                .expect("the websocket is still open")
                .expect("a readable websocket frame");
            let Message::Text(text) = frame else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).expect("protocol messages are JSON");
            match message["type"].as_str() {
                Some("ping") => self.send(json!({ "type": "pong" })).await,
                Some("ka" | "pong") => {}
                _ => return message,
            }
        }
    }

    /// Waits up to `within` for the server to close the socket (answering pings, skipping
    /// every other message) and returns the close code and reason; `None` when it stayed open.
    pub async fn wait_closed(&mut self, within: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Some((u16::from(frame.code), frame.reason.to_string()));
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return Some((1005, String::new()));
                }
                Some(Ok(Message::Text(text))) => {
                    if text.contains("\"type\":\"ping\"") {
                        self.send(json!({ "type": "pong" })).await;
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Runs `query` as operation `id` and returns every payload it produced, in order, up to
    /// its `complete`. Errors are returned as payloads of the form `{"errors": …}`.
    pub async fn run(&mut self, id: &str, query: &str, variables: Value) -> Vec<Value> {
        self.start(id, query, variables).await;
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
