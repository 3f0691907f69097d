//! A small graphql-transport-ws client: one connection, any number of subscriptions on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a subscription delivers.
#[derive(Debug)]
pub enum Event {
    /// A `next` payload's `data`.
    Next(Value),
    /// The server completed it (or it failed: the message).
    End(Option<String>),
}

/// A connection after `connection_ack`.
pub struct Connection {
    sink: Arc<Mutex<SplitSink<Socket, Message>>>,
    routes: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>,
    next_id: AtomicU64,
}

impl Connection {
    /// Connects and initialises (no credentials: the bench servers run with auth off).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .context("websocket")?;
        let (mut sink, mut stream) = socket.split();
        sink.send(Message::Text(
            json!({ "type": "connection_init", "payload": {} })
                .to_string()
                .into(),
        ))
        .await?;
        match stream.next().await {
            Some(Ok(Message::Text(text))) if text.contains("connection_ack") => {}
            other => bail!("no connection_ack: {other:?}"),
        }
        let sink = Arc::new(Mutex::new(sink));
        let routes: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>> = Arc::default();
        tokio::spawn(read(stream, Arc::clone(&sink), Arc::clone(&routes)));
        Ok(Self {
            sink,
            routes,
            next_id: AtomicU64::new(1),
        })
    }

    /// Starts a subscription; its events arrive on the returned channel.
    pub async fn subscribe(
        &self,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<(String, mpsc::UnboundedReceiver<Event>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (sender, receiver) = mpsc::unbounded_channel();
        self.routes.lock().await.insert(id.clone(), sender);
        let message = json!({ "id": id, "type": "subscribe",
            "payload": { "query": query, "variables": variables } });
        self.sink
            .lock()
            .await
            .send(Message::Text(message.to_string().into()))
            .await?;
        Ok((id, receiver))
    }

    /// Stops a subscription.
    pub async fn complete(&self, id: &str) {
        self.routes.lock().await.remove(id);
        let message = json!({ "id": id, "type": "complete" });
        let _ = self
            .sink
            .lock()
            .await
            .send(Message::Text(message.to_string().into()))
            .await;
    }
}

async fn read(
    mut stream: SplitStream<Socket>,
    sink: Arc<Mutex<SplitSink<Socket, Message>>>,
    routes: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Event>>>>,
) {
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        let event = match message["type"].as_str() {
            // A `next` carrying errors has no data: the subscriber counts it as an error.
            Some("next") => Event::Next(message["payload"]["data"].clone()),
            Some("error") => Event::End(Some(message["payload"].to_string())),
            Some("complete") => Event::End(None),
            Some("ping") => {
                let pong = json!({ "type": "pong" }).to_string();
                let _ = sink.lock().await.send(Message::Text(pong.into())).await;
                continue;
            }
            _ => continue,
        };
        let ended = matches!(event, Event::End(_));
        let mut routes = routes.lock().await;
        if let Some(route) = routes.get(&id) {
            let _ = route.send(event);
        }
        if ended {
            routes.remove(&id);
        }
    }
    for (_, route) in routes.lock().await.drain() {
        let _ = route.send(Event::End(Some("connection closed".into())));
    }
}
