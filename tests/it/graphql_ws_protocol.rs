//! `/graphql/ws` held to graphql-transport-ws's close codes (see `server/src/graphql_ws.rs`),
//! with raw frames for what a correct client never sends, and with the `graphql-ws` npm client
//! the playground uses for the normal flow, keep-alive pings and a refused `connection_init`.

use std::path::Path;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use proctor_tests::TestApp;
use proctor_tests::infra::is_ci;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws socket on which nothing was sent yet.
async fn raw(app: &TestApp) -> Socket {
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next text message, as JSON.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Reads until the server closes; its code and reason.
async fn closed(socket: &mut Socket) -> (u16, String) {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("closed within 5 s");
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

/// A socket past `connection_ack`.
async fn acknowledged(app: &TestApp) -> Socket {
    let mut socket = raw(app).await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    socket
}

#[tokio::test]
async fn each_protocol_violation_closes_with_its_code() {
    let app = TestApp::builder()
        .with_args(&["--ws-init-timeout-seconds=1"])
        .spawn()
        .await;

    let mut socket = raw(&app).await;
    socket.send(Message::text("not json")).await.unwrap();
    assert_eq!(closed(&mut socket).await.0, 4400, "not a message");

    let mut socket = acknowledged(&app).await;
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "1", "payload": {} }),
    )
    .await;
    assert_eq!(
        closed(&mut socket).await.0,
        4400,
        "a subscribe without a query"
    );

    let mut socket = raw(&app).await;
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "{ serverInfo { version } }" } }),
    )
    .await;
    assert_eq!(
        closed(&mut socket).await,
        (4401, "Unauthorized".to_owned()),
        "subscribe before connection_ack"
    );

    let mut socket = raw(&app).await;
    let started = std::time::Instant::now();
    assert_eq!(
        closed(&mut socket).await,
        (4408, "Connection initialisation timeout".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    let mut socket = acknowledged(&app).await;
    let forever = json!({ "type": "subscribe", "id": "same",
        "payload": { "query": "subscription { executionEvents { id } }" } });
    send(&mut socket, forever.clone()).await;
    send(&mut socket, forever).await;
    assert_eq!(
        closed(&mut socket).await,
        (4409, "Subscriber for same already exists".to_owned())
    );

    let mut socket = acknowledged(&app).await;
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(
        closed(&mut socket).await.0,
        4429,
        "a second connection_init"
    );

    let mut socket = acknowledged(&app).await;
    send(
        &mut socket,
        json!({ "type": "ping", "payload": { "n": 1 } }),
    )
    .await;
    let pong = next(&mut socket).await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

#[tokio::test]
async fn a_refused_connection_init_closes_with_4403() {
    let app = TestApp::builder()
        .with_args(&["--auth-enabled"])
        .spawn()
        .await;
    let mut socket = raw(&app).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "email": "nobody@example.com", "token": "not-a-token" } }),
    )
    .await;
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.starts_with("Forbidden"), "{reason}");
}

#[tokio::test]
async fn the_graphql_ws_client_runs_operations_gets_pongs_and_hears_a_refusal() {
    let playground = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playground");
    if !playground
        .join("node_modules/graphql-ws/package.json")
        .exists()
    {
        assert!(
            !is_ci(),
            "CI=true but graphql-ws is not installed (npm --prefix playground ci)"
        );
        eprintln!("SKIPPED: graphql-ws is not installed (npm --prefix playground ci)");
        return;
    }
    let app = TestApp::builder()
        .with_args(&["--auth-enabled"])
        .spawn()
        .await;
    let token = app.issue_token("ws@example.com", &["ops"], false).await;
    let output = tokio::process::Command::new("node")
        .args([
            "--experimental-websocket",
            "--no-warnings",
            "test/ws-client.mjs",
        ])
        .arg(app.ws_url())
        .arg("not-a-token")
        .env("PROCTOR_WS_TOKEN", &token)
        .current_dir(&playground)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}): {stdout}\n{stderr}"));
    assert_eq!(
        report["data"]["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{report}"
    );
    assert!(
        report["pongs"].as_u64().unwrap_or_default() >= 2,
        "keep-alive pings are answered: {report}"
    );
    assert_eq!(report["refused"]["code"], 4403, "{report}");
}
