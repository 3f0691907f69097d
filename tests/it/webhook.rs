//! The webhook authenticator against a small identity service started inside the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use proctor_tests::api::{Me, me};
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
    let legacy =
        |token: &str| app.api_with(&[("Access-Token", token), ("Email-Id", "ada@example.com")]);
    let me = |token: &str| {
        let api = legacy(token);
        async move { api.call::<Me>(me::Variables).await.map(|data| data.me) }
    };

    let ada = me("good-token").await.expect("accepted").expect("a caller");
    assert_eq!(ada.email.as_deref(), Some("ada@example.com"));
    assert_eq!(ada.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(ada.groups, ["ops", "proctor.admin"]);
    assert!(ada.admin);
    assert_eq!(
        identity.requests.lock().unwrap()[0],
        json!({ "email": "ada@example.com", "token": "good-token" }),
        "the request carries e-mail and token"
    );
    let plain = me("plain-token")
        .await
        .expect("accepted")
        .expect("a caller");
    assert!(!plain.admin, "admin comes from the groups");

    for token in ["disabled-token", "unknown-token"] {
        let refused = me(token).await.expect_err("refused");
        assert_eq!(refused.code, "UNAUTHENTICATED", "{token}");
    }

    // Within the cache period the service is not asked again.
    let asked = identity.hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        me("good-token").await.expect("accepted");
    }
    assert_eq!(
        identity.hits.load(Ordering::SeqCst),
        asked,
        "answers are cached"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    me("good-token").await.expect("accepted");
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
    let together = (0..8).map(|_| me("good-token"));
    for answer in futures::future::join_all(together).await {
        let caller = answer.expect("accepted").expect("a caller");
        assert_eq!(caller.email.as_deref(), Some("ada@example.com"));
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
    let failed = legacy("plain-token")
        .try_procs(None)
        .await
        .expect_err("failing");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let failed_again = legacy("plain-token")
        .try_procs(None)
        .await
        .expect_err("failing");
    for failure in [&failed, &failed_again] {
        assert_eq!(failure.code, "INTERNAL", "{failure:?}");
        assert!(
            !failure.shown.contains("plain-token"),
            "tokens are not echoed: {}",
            failure.shown
        );
    }
    identity.failing.store(false, Ordering::SeqCst);
    legacy("plain-token")
        .try_procs(None)
        .await
        .expect("the service answers again");
}

on_both_stacks!(the_identity_service_decides_and_is_asked_once_per_cache_period);
