//! `/graphql` over HTTP (POST and GET) and `/graphql/ws` (both websocket protocols).

use proctor_tests::graphql_ws::{Protocol, WsClient};
use proctor_tests::{Backend, Bus, TestApp};
use serde_json::{Value, json};

const SERVER_INFO: &str = "{ serverInfo { version storage eventBus executor authEnabled } }";

/// What `serverInfo` must say for `app`'s settings.
fn expected_server_info(app: &TestApp) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "storage": match app.settings.storage.database.backend() {
            proctor_schema::system::StorageBackend::Sqlite => "SQLITE",
            proctor_schema::system::StorageBackend::Postgres => "POSTGRES",
        },
        "eventBus": if app.settings.redis.is_some() { "REDIS" } else { "MEMORY" },
        "executor": "LOCAL",
        "authEnabled": false,
    })
}

#[tokio::test]
async fn server_info_over_http_post_reports_the_configuration() {
    let app = TestApp::spawn().await;
    let response = app.graphql(SERVER_INFO, json!({})).await;
    assert_eq!(response["errors"], Value::Null, "{response}");
    assert_eq!(response["data"]["serverInfo"], expected_server_info(&app));
}

#[tokio::test]
async fn server_info_distinguishes_the_embedded_default() {
    let app = TestApp::builder()
        .backend(Backend::Sqlite)
        .bus(Bus::Memory)
        .spawn()
        .await;
    let response = app.graphql(SERVER_INFO, json!({})).await;
    assert_eq!(response["data"]["serverInfo"]["storage"], "SQLITE");
    assert_eq!(response["data"]["serverInfo"]["eventBus"], "MEMORY");
}

#[tokio::test]
async fn server_info_over_http_get() {
    let app = TestApp::spawn().await;
    let response: Value = app
        .http
        .get(url::Url::parse_with_params(&app.url("/graphql"), [("query", SERVER_INFO)]).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["data"]["serverInfo"], expected_server_info(&app));
}

#[tokio::test]
async fn server_info_over_graphql_transport_ws() {
    let app = TestApp::spawn().await;
    let mut client = WsClient::connect(&app.ws_url(), Protocol::TransportWs, json!({})).await;
    let payloads = client.run("1", SERVER_INFO, json!({})).await;
    assert_eq!(
        payloads,
        vec![json!({ "data": { "serverInfo": expected_server_info(&app) } })]
    );
}

#[tokio::test]
async fn server_info_over_legacy_graphql_ws() {
    let app = TestApp::spawn().await;
    let mut client = WsClient::connect(&app.ws_url(), Protocol::LegacyWs, json!({})).await;
    let payloads = client.run("a", SERVER_INFO, json!({})).await;
    assert_eq!(
        payloads,
        vec![json!({ "data": { "serverInfo": expected_server_info(&app) } })]
    );
}

#[tokio::test]
async fn queries_deeper_than_the_limit_are_refused() {
    let app = TestApp::builder()
        .with_args(&["--graphql-max-depth=3"])
        .spawn()
        .await;
    let shallow = app.graphql("{ serverInfo { version } }", json!({})).await;
    assert_eq!(shallow["errors"], Value::Null, "{shallow}");

    let deep = app
        .graphql(
            "{ __schema { types { fields { type { name } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(deep["data"], Value::Null, "{deep}");
    let message = deep["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too deep"), "{deep}");
}

#[tokio::test]
async fn queries_more_complex_than_the_limit_are_refused() {
    let app = TestApp::builder()
        .with_args(&["--graphql-max-complexity=3"])
        .spawn()
        .await;
    let response = app.graphql(SERVER_INFO, json!({})).await;
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("too complex"), "{response}");
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413() {
    let app = TestApp::builder()
        .with_args(&["--max-body-bytes=1024"])
        .spawn()
        .await;
    let padding = " ".repeat(2048);
    let response = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": format!("{{ serverInfo {{ version }} }}{padding}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn malformed_graphql_gets_a_graphql_error_not_a_crash() {
    let app = TestApp::spawn().await;
    let response = app.graphql("{ serverInfo { nope } }", json!({})).await;
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("nope"), "{response}");
    // The server is still fine afterwards.
    let ok = app.graphql(SERVER_INFO, json!({})).await;
    assert_eq!(ok["data"]["serverInfo"], expected_server_info(&app));
}
