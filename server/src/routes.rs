//! The HTTP surface: health, readiness, GraphQL over HTTP and websockets.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::document_cache::DocumentCache;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::http::WebSocketProtocols;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRef, RawQuery, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use proctor_schema::auth::RequestAuth;
use proctor_schema::system::{EventBusKind, ExecutorKind};
use proctor_schema::{AppState, ProctorSchema};
use serde_json::{Map, Value, json};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::credentials;
use crate::graphql_http::{self, MediaType};
use crate::graphql_ws::WsLimits;
use crate::guard::Guard;

/// How long each readiness probe may take before its dependency counts as down.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);
/// Distinct operation texts whose parsed documents are kept (clients repeat a few).
const CACHED_DOCUMENTS: NonZeroUsize = NonZeroUsize::new(512).expect("not zero");

/// What the HTTP handlers share.
#[derive(Clone)]
struct HttpState {
    app: AppState,
    schema: ProctorSchema,
    documents: Arc<DocumentCache>,
    websockets: Arc<WsLimits>,
    metrics_token: Option<Arc<str>>,
    scraper: Arc<crate::scrape::Scraper>,
}

impl FromRef<HttpState> for AppState {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

/// Every route `proctord` serves, behind the browser guard (`crate::guard`).
pub fn router(state: AppState, schema: ProctorSchema, settings: &Settings) -> Router {
    let http = &settings.http;
    let guard = Arc::new(Guard {
        auth_enabled: settings.auth_enabled(),
        allowed_origins: http.allowed_origins.clone(),
        allowed_hosts: http.allowed_hosts.clone(),
    });
    let state_for_metrics = state.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .route_layer(axum::middleware::from_fn(crate::guard::require_json)),
        )
        .route("/graphql/ws", get(graphql_ws))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(HttpState {
            app: state.clone(),
            schema,
            documents: Arc::new(DocumentCache::new(CACHED_DOCUMENTS)),
            websockets: Arc::new(WsLimits {
                per_connection: http.max_subscriptions_per_connection,
                server_wide: http.max_subscriptions,
                open: AtomicUsize::new(0),
                revalidate: http.ws_revalidate,
                init_timeout: http.ws_init_timeout,
                max_message: http.max_body_bytes,
            }),
            scraper: Arc::default(),
            metrics_token: settings
                .telemetry
                .metrics_token
                .as_ref()
                .filter(|_| settings.auth_enabled())
                .map(|token| Arc::from(token.expose())),
        })
        .merge(crate::rest::router(state, http.min_client_version.clone()))
        .merge(crate::playground::router(http.playground_dir.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state_for_metrics,
            record_http,
        ))
        .layer(RequestBodyLimitLayer::new(http.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::guard::check,
        ))
        .layer(axum::middleware::from_fn(record_trace_id))
        // Request spans at INFO, so an OTLP export (which takes INFO and above) carries them;
        // `trace_id` is filled in while exporting, so log lines inside a request name its trace.
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    uri = %request.uri(),
                    version = ?request.version(),
                    trace_id = tracing::field::Empty,
                )
            }),
        )
}

/// The `OpenID` Connect discovery document of the per-run identity tokens: what a cloud's
/// workload identity federation reads to trust them (issuer, where the keys are, ES256).
async fn openid_configuration(State(http): State<HttpState>) -> Response {
    let issuer = &http.app.server_info().public_url;
    let document = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [proctor_schema::signing::ALGORITHM],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "proc", "proc_version",
            "execution_id", "trigger", "triggered_by", "schedule_id"
        ],
    });
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(document),
    )
        .into_response()
}

/// The public signing keys (JWK Set): every key that signed a token or receipt still valid.
async fn jwks(State(http): State<HttpState>) -> Response {
    match http.app.published_keys().await {
        Ok(keys) => ([(header::CACHE_CONTROL, "public, max-age=60")], Json(keys)).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot read the signing keys");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the signing keys cannot be read right now",
            )
                .into_response()
        }
    }
}

/// Runs one GraphQL request with the caller's header credentials attached, answering in the
/// media type the client accepts (see [`crate::graphql_http`]).
async fn execute(
    http: &HttpState,
    headers: &HeaderMap,
    media: MediaType,
    request: async_graphql::Request,
) -> Response {
    let mut request = request.data(RequestAuth::new(credentials::from_headers(headers)));
    http.documents.attach(&mut request);
    if let Some(missing) = graphql_http::missing_variable(&mut request) {
        return graphql_http::respond(async_graphql::Response::from_errors(vec![missing]), media);
    }
    graphql_http::respond(http.schema.execute(request).await, media)
}

async fn graphql_post(State(http): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(media) = graphql_http::negotiate(&headers) else {
        return graphql_http::not_acceptable();
    };
    match graphql_http::request_from_body(&body) {
        Ok(request) => execute(&http, &headers, media, request).await,
        Err(why) => graphql_http::error(StatusCode::BAD_REQUEST, media, &why),
    }
}

/// GET serves queries only: a mutation in a URL would end up in proxy and access logs (with
/// any secret it carries) and could be triggered by a link.
async fn graphql_get(
    State(http): State<HttpState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(media) = graphql_http::negotiate(&headers) else {
        return graphql_http::not_acceptable();
    };
    let request = match graphql_http::request_from_query(query.as_deref()) {
        Ok(request) => request,
        Err(why) => return graphql_http::error(StatusCode::BAD_REQUEST, media, &why),
    };
    if graphql_http::contains_mutation(&request.query) {
        let mut refused = graphql_http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            media,
            "mutations must be sent with POST",
        );
        refused
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return refused;
    }
    execute(&http, &headers, media, request).await
}

/// GraphQL over websockets (graphql-transport-ws and the legacy graphql-ws), served by
/// [`crate::graphql_ws`]. Credentials come from the `connection_init` payload or the upgrade
/// request's headers. Wrong credentials end the connection during `connection_init`; missing
/// ones leave only public fields usable.
async fn graphql_ws(
    State(http): State<HttpState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|name| name.trim().parse::<WebSocketProtocols>().ok());
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must name graphql-transport-ws or graphql-ws\n",
        )
            .into_response();
    };
    let from_headers = credentials::from_headers(&headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(http.websockets.max_message)
        .max_frame_size(http.websockets.max_message)
        .on_upgrade(move |socket| {
            crate::graphql_ws::serve(
                socket,
                http.schema,
                protocol,
                http.app,
                from_headers,
                http.websockets,
            )
        })
}

/// Prometheus metrics in the text exposition format. They name procs, so with auth on and
/// `PROCTOR_METRICS_TOKEN` set they need `Authorization: Bearer <that token>`.
async fn metrics(State(http): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &http.metrics_token {
        let presented = credentials::from_headers(&headers).bearer_token;
        let matches = presented.is_some_and(|token| {
            use subtle::ConstantTimeEq as _;
            token.as_bytes().ct_eq(expected.as_bytes()).into()
        });
        if !matches {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need Authorization: Bearer <PROCTOR_METRICS_TOKEN>\n",
            )
                .into_response();
        }
    }
    let metrics = http.app.metrics();
    metrics.set_scrape(&http.scraper.get(&http.app).await);
    let open_metrics =
        crate::negotiation::accepts(&headers, header::ACCEPT, &["application/openmetrics-text"]);
    if open_metrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics.render(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.render_classic(),
        )
            .into_response()
    }
}

/// Middleware recording the exported trace's id on the request span (nothing when traces are
/// not exported), so every log line of the request carries it.
async fn record_trace_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::Span::current();
    let trace = span.context().span().span_context().trace_id();
    if trace != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace));
    }
    next.run(request).await
}

/// Middleware timing every answered request into `proctor_http_request_duration_seconds`,
/// labelled with the route pattern that matched (`unmatched` for none), never the raw path.
async fn record_http(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.metrics().http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// 200 when the database and (if configured) Redis answer; 503 naming what is down otherwise.
/// The process keeps serving either way, so a load balancer can route around a replica that
/// lost a dependency and bring it back when the dependency returns.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let bus = state.event_bus();
    let runner = state.runner();
    let (database, event_bus, executor) = tokio::join!(
        probe(state.db().ping()),
        probe(bus.check()),
        probe(runner.check_executor())
    );

    let mut checks = vec![("database", database)];
    if bus.kind() == EventBusKind::Redis {
        checks.push(("redis", event_bus));
    }
    if runner.executor_kind() == ExecutorKind::Kubernetes {
        checks.push(("kubernetes", executor));
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
