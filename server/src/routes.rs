//! The HTTP surface: health, readiness, GraphQL over HTTP and websockets.

use std::time::Duration;

use async_graphql_axum::{GraphQL, GraphQLSubscription};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{any, get, post_service};
use proctor_schema::system::EventBusKind;
use proctor_schema::{AppState, ProctorSchema};
use serde_json::{Map, Value, json};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

/// How long each readiness probe may take before its dependency counts as down.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Every route `proctord` serves.
pub fn router(state: AppState, schema: ProctorSchema, max_body_bytes: usize) -> Router {
    Router::new()
        // Legacy clients ping with any method (Go's mux registered it without one).
        .route("/ping", any(|| async { "pong" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/graphql",
            post_service(GraphQL::new(schema.clone())).get_service(GraphQL::new(schema.clone())),
        )
        .route_service("/graphql/ws", GraphQLSubscription::new(schema))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// 200 when the database and (if configured) Redis answer; 503 naming what is down otherwise.
/// The process keeps serving either way, so a load balancer can route around a replica that
/// lost a dependency and bring it back when the dependency returns.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let bus = state.event_bus();
    let (database, event_bus) = tokio::join!(probe(state.db().ping()), probe(bus.check()));

    let mut checks = vec![("database", database)];
    if bus.kind() == EventBusKind::Redis {
        checks.push(("redis", event_bus));
    }
    let down: Vec<&str> = checks
        .iter()
        .filter(|(_, result)| result.is_err())
        .map(|(name, _)| *name)
        .collect();
    let details: Map<String, Value> = checks
        .iter()
        .map(|(name, result)| {
            let detail = match result {
                Ok(()) => "ok".to_owned(),
                Err(error) => format!("down: {error}"),
            };
            ((*name).to_owned(), Value::String(detail))
        })
        .collect();
    if down.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "checks": details })),
        )
    } else {
        tracing::warn!(down = ?down, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "down": down, "checks": details })),
        )
    }
}

/// Runs one readiness probe with the readiness timeout.
async fn probe<E: std::fmt::Display>(
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(READINESS_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {READINESS_TIMEOUT:?}")),
    }
}
