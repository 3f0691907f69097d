//! `/playground`: GraphiQL and the live view, built from `playground/` into a directory of
//! static files (`npm --prefix playground ci && npm --prefix playground run build`) and served
//! from it. The pages load nothing from anywhere else; a Content-Security-Policy makes browsers
//! refuse to try.

use std::path::PathBuf;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Where `cargo build` finds the built assets in a checkout.
pub const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../playground/dist");

/// Only this origin: scripts, styles, fonts and connections (HTTP and websockets).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' \
    'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The playground routes, serving the built assets in `dir`; a page that says how to build
/// them when they are missing.
pub fn router(dir: PathBuf) -> Router {
    let routes = if dir.join("index.html").is_file() {
        Router::new()
            .route_service("/playground", ServeFile::new(dir.join("index.html")))
            .route_service("/playground/live", ServeFile::new(dir.join("live.html")))
            .nest_service("/playground/", ServeDir::new(&dir))
    } else {
        let missing = move || {
            let dir = dir.clone();
            async move { not_built(&dir) }
        };
        Router::new()
            .route("/playground", get(missing.clone()))
            .route("/playground/{*rest}", get(missing))
    };
    routes.layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    ))
}

fn not_built(dir: &std::path::Path) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(format!(
            "<!doctype html><title>Playground not built</title><h1>The playground is not \
             built</h1><p>No assets in <code>{}</code>. Build them with <code>npm --prefix \
             playground ci &amp;&amp; npm --prefix playground run build</code> in the Proctor \
             checkout, or point <code>PROCTOR_PLAYGROUND_DIR</code> at a built copy. GraphQL \
             itself is at <code>/graphql</code> and <code>/graphql/ws</code>.</p>",
            dir.display()
        )),
    )
        .into_response()
}
