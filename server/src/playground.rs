//! The browser UI: the console at `/` and GraphiQL at `/playground`. `playground/` is built into
//! `playground/dist`
//! (`server/build.rs` runs npm and esbuild) and the result is **embedded in the binary**, so a
//! copied or `cargo install`ed `proctord` serves its UI from anywhere; `PROCTOR_PLAYGROUND_DIR`
//! serves a directory instead (developing the UI without rebuilding the server).
//!
//! Invariants:
//! - The pages load nothing from anywhere else; a Content-Security-Policy makes browsers refuse
//!   to try.
//! - Every embedded answer carries an `ETag` (the content's SHA-256) and `Cache-Control:
//!   no-cache`, so browsers revalidate and get 304 while nothing changed; clients that accept
//!   gzip get the copy compressed at build time (`Vary: Accept-Encoding`).
//! - `GET /` is the console (one page; its views live in the address's hash, so no other path
//!   needs to answer with it); `/playground/live`, the console's predecessor, leads to it.
//!   `/graphql/schema.graphql` is the SDL the server runs.

use std::path::PathBuf;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// The built assets, embedded at compile time (none when the build had no npm).
#[derive(RustEmbed)]
#[folder = "../playground/dist/"]
#[allow_missing = true]
#[exclude = "*.map"]
struct Assets;

/// Only this origin: scripts, styles, fonts and connections (HTTP and websockets).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' \
    'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Where the console is.
pub const UI_PATH: &str = "/";

/// The UI routes: the embedded assets, or those in `dir` when given (`PROCTOR_PLAYGROUND_DIR`);
/// a page that says how to build them when there are none. Also `/` and the SDL.
pub fn router(dir: Option<PathBuf>) -> Router {
    let missing = || {
        Router::new()
            .route("/", get(not_built))
            .route("/playground", get(not_built))
            .route("/playground/{*rest}", get(not_built))
    };
    let routes = match dir {
        // A directory given on purpose is served or reported, never replaced silently.
        Some(dir) if dir.join("index.html").is_file() => Router::new()
            .route_service("/", ServeFile::new(dir.join("console.html")))
            .route_service("/playground", ServeFile::new(dir.join("index.html")))
            .nest_service("/playground/", ServeDir::new(&dir)),
        Some(_) => missing(),
        None if Assets::get("index.html").is_some() => Router::new()
            .route(
                "/playground",
                get(|headers| async move { embedded("index.html", &headers) }),
            )
            .route(
                "/",
                get(|headers| async move { embedded("console.html", &headers) }),
            )
            .route(
                "/playground/{*file}",
                get(|Path(file): Path<String>, headers: HeaderMap| async move {
                    embedded(&file, &headers)
                }),
            ),
        None => missing(),
    };
    routes
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .route("/playground/live", get(|| async { Redirect::to(UI_PATH) }))
        .route("/graphql/schema.graphql", get(schema))
}

/// The SDL of the schema this server runs (built once: it cannot change while it runs).
async fn schema() -> Response {
    static SDL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        SDL.get_or_init(proctor_schema::sdl).clone(),
    )
        .into_response()
}

/// One embedded file: 304 when the client holds this version, the gzip copy when it takes gzip.
fn embedded(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(name) else {
        return (StatusCode::NOT_FOUND, "no such file in the playground\n").into_response();
    };
    let gzip = accepts_gzip(headers)
        .then(|| Assets::get(&format!("{name}.gz")))
        .flatten();
    let hash = hex::encode(file.metadata.sha256_hash());
    let etag = match gzip {
        Some(_) => format!("\"{hash}-gzip\""),
        None => format!("\"{hash}\""),
    };
    let mime = mime_of(name);
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        }) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match &gzip {
            Some(compressed) => (
                [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))],
                compressed.data.clone().into_owned(),
            )
                .into_response(),
            None => file.data.into_owned().into_response(),
        }
    };
    let answer = response.headers_mut();
    answer.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    answer.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    answer.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        answer.insert(header::ETAG, value);
    }
    response
}

/// Whether `Accept-Encoding` takes gzip (with a quality above zero).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    crate::negotiation::accepts(headers, header::ACCEPT_ENCODING, &["gzip", "*"])
}

/// The content type of the kinds of file the build writes.
fn mime_of(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

async fn not_built() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(
            "<!doctype html><title>Playground not built</title><h1>The playground is not \
             built</h1><p>This proctord was compiled without its browser assets (npm was \
             missing, or <code>PROCTOR_SKIP_PLAYGROUND_BUILD</code> was set), or \
             <code>PROCTOR_PLAYGROUND_DIR</code> names a directory without them. Build them with \
             <code>npm --prefix playground ci &amp;&amp; npm --prefix playground run build</code> \
             in the Proctor checkout and rebuild, or point <code>PROCTOR_PLAYGROUND_DIR</code> at \
             a built copy. GraphQL itself is at <code>/graphql</code> and \
             <code>/graphql/ws</code>.</p>",
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_unless_refused() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("br"));
        assert!(!with("gzip;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
