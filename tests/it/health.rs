//! `/ping`, `/healthz`, `/readyz`.

use proctor_tests::{Backend, Bus, TestApp};
use serde_json::Value;

#[tokio::test]
async fn ping_answers_pong_to_any_method() {
    let app = TestApp::spawn().await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
    ] {
        let response = app
            .http
            .request(method.clone(), app.url("/ping"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(response.text().await.unwrap(), "pong", "{method}");
    }
}

#[tokio::test]
async fn healthz_is_ok_while_the_process_runs() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn readyz_checks_only_the_database_with_the_embedded_default() {
    let app = TestApp::builder()
        .backend(Backend::Sqlite)
        .bus(Bus::Memory)
        .spawn()
        .await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"], serde_json::json!({ "database": "ok" }));
}

#[tokio::test]
#[cfg_attr(
    any(proctor_no_postgres, proctor_no_redis),
    ignore = "needs Postgres and Redis: set PROCTOR_TEST_DATABASE_URL and PROCTOR_TEST_REDIS_URL, or run ./tests/run.sh"
)]
async fn readyz_checks_postgres_and_redis_when_configured() {
    let Some(app) = TestApp::builder()
        .backend(Backend::Postgres)
        .bus(Bus::Redis)
        .try_spawn()
        .await
    else {
        return;
    };
    // The Redis subscription is established in the background right after start-up.
    let mut body = Value::Null;
    for _ in 0..100 {
        let response = app.http.get(app.url("/readyz")).send().await.unwrap();
        body = response.json().await.unwrap();
        if body["status"] == "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(
        body["checks"],
        serde_json::json!({ "database": "ok", "redis": "ok" })
    );
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn graceful_stop_ends_serving_cleanly() {
    let app = TestApp::spawn().await;
    let address = app.address;
    app.stop().await.expect("serving ends without error");
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the port is closed after shutdown"
    );
}
