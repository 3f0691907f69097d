//! The webhook authenticator against a small identity service started inside the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use proctor_tests::{Stack, TestApp};
use serde_json::{Value, json};

/// The identity service: knows one active token, one inactive token, and can be made to fail.
#[derive(Clone, Default)]
struct Identity {
    hits: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    slow: Arc<std::sync::atomic::AtomicBool>,
    requests: Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn check(
    State(identity): State<Identity>,
    Json(request): Json<Value>,
) -> (StatusCode, Json<Value>) {
    identity.hits.fetch_add(1, Ordering::SeqCst);
    identity.requests.lock().unwrap().push(request.clone());
    if identity.failing.load(Ordering::SeqCst) {
        return (StatusCode::BAD_GATEWAY, Json(json!({})));
    }
    if identity.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    match request["token"].as_str() {
        Some("good-token") => (
            StatusCode::OK,
            Json(
                json!({ "active": true, "name": "Ada Lovelace", "groups": ["ops", "proctor.admin"] }),
            ),
        ),
        Some("plain-token") => (
            StatusCode::OK,
            Json(json!({ "active": true, "groups": ["ops"] })),
        ),
        Some("disabled-token") => (StatusCode::OK, Json(json!({ "active": false }))),
        _ => (StatusCode::UNAUTHORIZED, Json(json!({}))),
    }
}

async fn start_identity_service(identity: Identity) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/check", post(check))
        .with_state(identity);
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/check")
}

async fn the_identity_service_decides_and_is_asked_once_per_cache_period(stack: Stack) {
    let identity = Identity::default();
    let url = start_identity_service(identity.clone()).await;
    let Some(app) = TestApp::builder()
        .stack(stack)
        .with_args(&[
            "--auth-enabled".to_owned(),
            format!("--auth-webhook-url={url}"),
            "--auth-webhook-cache-seconds=1".to_owned(),
            "--auth-webhook-timeout-seconds=2".to_owned(),
        ])
        .try_spawn()
        .await
    else {
        return;
    };
    const ME: &str = "{ me { email name groups admin } }";
    let legacy = |token: &'static str| [("Access-Token", token), ("Email-Id", "ada@example.com")];

    let me = app.graphql_with(&legacy("good-token"), ME, json!({})).await;
    assert_eq!(
        me["data"]["me"],
        json!({ "email": "ada@example.com", "name": "Ada Lovelace",
                "groups": ["ops", "proctor.admin"], "admin": true })
    );
    assert_eq!(
        identity.requests.lock().unwrap()[0],
        json!({ "email": "ada@example.com", "token": "good-token" }),
        "the request carries e-mail and token"
    );
    let plain = app
        .graphql_with(&legacy("plain-token"), ME, json!({}))
        .await;
    assert_eq!(
        plain["data"]["me"]["admin"], false,
        "admin comes from the groups"
    );

    for token in ["disabled-token", "unknown-token"] {
        let refused = app.graphql_with(&legacy(token), ME, json!({})).await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{token}"
        );
    }

    // Within the cache period the service is not asked again.
    let asked = identity.hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        app.graphql_with(&legacy("good-token"), ME, json!({})).await;
    }
    assert_eq!(
        identity.hits.load(Ordering::SeqCst),
        asked,
        "answers are cached"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.graphql_with(&legacy("good-token"), ME, json!({})).await;
    assert_eq!(
        identity.hits.load(Ordering::SeqCst),
        asked + 1,
        "and asked again after it"
    );

    // Callers that arrive while nothing is cached wait for one answer (a slow service makes
    // sure they overlap).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    identity.slow.store(true, Ordering::SeqCst);
    let asked = identity.hits.load(Ordering::SeqCst);
    let headers = legacy("good-token");
    let together = (0..8).map(|_| app.graphql_with(&headers, ME, json!({})));
    for response in futures::future::join_all(together).await {
        assert_eq!(
            response["data"]["me"]["email"], "ada@example.com",
            "{response}"
        );
    }
    assert_eq!(
        identity.hits.load(Ordering::SeqCst),
        asked + 1,
        "one question for callers that came together"
    );
    identity.slow.store(false, Ordering::SeqCst);

    // A failing identity service is an internal error (not "wrong credentials"), and the
    // failure is not cached.
    identity.failing.store(true, Ordering::SeqCst);
    let failed = app
        .graphql_with(&legacy("plain-token"), "{ procs { name } }", json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let failed_again = app
        .graphql_with(&legacy("plain-token"), "{ procs { name } }", json!({}))
        .await;
    for response in [&failed, &failed_again] {
        assert_eq!(
            response["errors"][0]["extensions"]["code"], "INTERNAL",
            "{response}"
        );
        assert!(
            !response.to_string().contains("plain-token"),
            "tokens are not echoed"
        );
    }
    identity.failing.store(false, Ordering::SeqCst);
    let recovered = app
        .graphql_with(&legacy("plain-token"), "{ procs { name } }", json!({}))
        .await;
    assert_eq!(recovered["errors"], Value::Null, "{recovered}");
}

on_both_stacks!(the_identity_service_decides_and_is_asked_once_per_cache_period);
