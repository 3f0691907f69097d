//! The browser guard: what keeps a web page on another origin from driving a server.
//!
//! A server with auth off runs commands for whoever reaches it, and a browser reaches
//! loopback for every page its user visits. So, for every request and websocket upgrade:
//! - a request carrying an `Origin` header is served only when that origin is the server's own
//!   (the scheme of the origin, the host and port the request was sent to) or is listed in
//!   `PROCTOR_ALLOWED_ORIGINS`; anything else, `null` included, gets 403 before any handler
//!   runs (websocket upgrades included, so nothing is upgraded);
//! - while auth is off, a request whose `Host` is not a loopback name (`localhost`, `127.x.y.z`,
//!   `[::1]`) or listed in `PROCTOR_ALLOWED_HOSTS` gets 421: a DNS-rebinding page reaches the
//!   server under its own host name and is refused there;
//! - `POST /graphql` takes only `application/json` bodies (see [`require_json`]): the
//!   "simple" content types a page may send without a CORS preflight get 415.
//!
//! Non-browser clients (the CLIs, scripts) send no `Origin` and are unaffected.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

/// What the guard admits.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Whether callers authenticate (the `Host` check applies only while they do not).
    pub auth_enabled: bool,
    /// Extra origins, normalized by [`normalize_origin`].
    pub allowed_origins: Vec<String>,
    /// Extra host names, in lower case.
    pub allowed_hosts: Vec<String>,
}

/// The origin `raw` names as `scheme://host:port` (the port always written), or why it is not
/// an origin a server could trust.
pub fn normalize_origin(raw: &str) -> Result<String, String> {
    if raw.trim() == "*" {
        return Err("\"*\" would trust every web page; list the origins instead".to_owned());
    }
    let url = url::Url::parse(raw.trim())
        .map_err(|e| format!("{raw:?} is not an origin like https://console.example.com: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?} is not an http or https origin"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{raw:?} has user information; an origin has none"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{raw:?} has a path, query or fragment; an origin is scheme://host[:port]"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("{raw:?} names no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{raw:?} names no port"))?;
    Ok(format!(
        "{}://{}:{port}",
        url.scheme(),
        host.to_ascii_lowercase()
    ))
}

/// The host name (without port) and the port of a `Host` header value.
fn split_host(raw: &str) -> Option<(String, Option<u16>)> {
    let authority: Authority = raw.trim().parse().ok()?;
    Some((authority.host().to_ascii_lowercase(), authority.port_u16()))
}

/// Whether `host` (no port; IPv6 in brackets) names this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host the request was sent to: the `Host` header, or the URI's authority (HTTP/2).
fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

/// Why a request is not served: the status and the message of the answer.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refusal(self.status, self.message)
    }
}

/// Why a request was admitted.
#[derive(Debug, PartialEq, Eq)]
enum Admitted {
    /// No `Origin`: not a browser's cross-origin request.
    NoOrigin,
    /// The server's own page.
    SameOrigin,
    /// A page of an origin in `PROCTOR_ALLOWED_ORIGINS` (answered with CORS headers).
    Listed(HeaderValue),
}

impl Guard {
    /// `Err` with the answer when the request must not be served.
    fn admit(&self, request: &Request) -> Result<Admitted, Refusal> {
        let host = request_host(request);
        let split = host.as_deref().and_then(split_host);
        if !self.auth_enabled {
            let admitted = split.as_ref().is_some_and(|(name, _)| {
                is_loopback_host(name) || self.allowed_hosts.iter().any(|h| h == name)
            });
            if !admitted {
                return Err(Refusal {
                    status: StatusCode::MISDIRECTED_REQUEST,
                    message: format!(
                        "this server has authentication off and answers only on loopback; the \
                         host {:?} is not served (list it in PROCTOR_ALLOWED_HOSTS, or turn \
                         authentication on)",
                        host.unwrap_or_default()
                    ),
                });
            }
        }
        self.check_origin(request.headers(), split.as_ref())
    }

    fn check_origin(
        &self,
        headers: &HeaderMap,
        host: Option<&(String, Option<u16>)>,
    ) -> Result<Admitted, Refusal> {
        let Some(value) = headers.get(header::ORIGIN) else {
            return Ok(Admitted::NoOrigin);
        };
        let origin = value.to_str().unwrap_or_default();
        let Ok(normalized) = normalize_origin(origin) else {
            return Err(foreign_origin(origin));
        };
        // The server's own origin: the page was loaded from the host and port this request
        // goes to (the port the scheme implies when the Host header names none).
        let own = host.and_then(|(name, port)| {
            let scheme = normalized.split("://").next()?;
            let default = if scheme == "https" { 443 } else { 80 };
            normalize_origin(&format!("{scheme}://{name}:{}", port.unwrap_or(default))).ok()
        });
        if own.as_deref() == Some(normalized.as_str()) {
            return Ok(Admitted::SameOrigin);
        }
        if self.allowed_origins.contains(&normalized) {
            return Ok(Admitted::Listed(value.clone()));
        }
        Err(foreign_origin(origin))
    }
}

fn foreign_origin(origin: &str) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "requests from the web origin {origin:?} are refused: only this server's own pages \
             and the origins in PROCTOR_ALLOWED_ORIGINS may call it"
        ),
    }
}

/// A refusal in the GraphQL error shape (the REST shim's clients never meet one: they send
/// no `Origin`).
fn refusal(status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "BAD_USER_INPUT",
        _ => "FORBIDDEN",
    };
    (
        status,
        Json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })),
    )
        .into_response()
}

/// Middleware applying [`Guard`] to every request. A listed origin also gets what browsers
/// need to call across origins: preflights are answered here, and answers carry
/// `Access-Control-Allow-Origin` for that origin (never `*`, never credentials: callers send
/// tokens in headers).
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match guard.admit(&request) {
        Ok(Admitted::Listed(origin)) => {
            let preflight = request.method() == Method::OPTIONS
                && request
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
            let mut response = if preflight {
                let mut response = StatusCode::NO_CONTENT.into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("content-type, authorization, access-token, email-id"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                response
            } else {
                next.run(request).await
            };
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            response
        }
        Ok(Admitted::NoOrigin | Admitted::SameOrigin) => next.run(request).await,
        Err(refused) => {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                origin = ?request.headers().get(header::ORIGIN),
                host = ?request.headers().get(header::HOST),
                "refused a cross-site or misdirected request"
            );
            refused.into_response()
        }
    }
}

/// Middleware for `/graphql`: a POST must carry `Content-Type: application/json` (any
/// parameters, e.g. a charset). Form encodings, multipart and text/plain are what a page on
/// another origin can send without asking; they get 415.
pub async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && !is_json(request.headers()) {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "POST /graphql takes only Content-Type: application/json (got {:?})",
                request
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
            ),
        );
    }
    next.run(request).await
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn guard(auth_enabled: bool) -> Guard {
        Guard {
            auth_enabled,
            allowed_origins: vec![normalize_origin("https://console.example.com").unwrap()],
            allowed_hosts: vec!["proctor.internal".to_owned()],
        }
    }

    fn request(host: &str, origin: Option<&str>) -> Request {
        let mut builder = Request::builder()
            .uri("/graphql")
            .header(header::HOST, host);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn origins_are_normalized_and_wildcards_refused() {
        assert_eq!(
            normalize_origin("HTTPS://Console.Example.com").unwrap(),
            "https://console.example.com:443"
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:5001").unwrap(),
            "http://127.0.0.1:5001"
        );
        assert!(normalize_origin("*").is_err());
        assert!(normalize_origin("null").is_err());
        assert!(normalize_origin("https://a.example/path").is_err());
        assert!(normalize_origin("ftp://a.example").is_err());
    }

    #[test]
    fn loopback_names() {
        for host in ["localhost", "LOCALHOST", "127.0.0.1", "127.9.8.7", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "10.0.0.1",
            "0.0.0.0",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn same_origin_and_listed_origins_pass_others_do_not() {
        let guard = guard(false);
        assert!(guard.admit(&request("127.0.0.1:5001", None)).is_ok());
        assert!(
            guard
                .admit(&request("127.0.0.1:5001", Some("http://127.0.0.1:5001")))
                .is_ok()
        );
        assert!(
            guard
                .admit(&request("localhost:5001", Some("http://localhost:5001")))
                .is_ok()
        );
        for foreign in [
            "http://127.0.0.1:5002",
            "http://localhost:5001",
            "https://evil.example",
            "null",
        ] {
            let refused = guard
                .admit(&request("127.0.0.1:5001", Some(foreign)))
                .expect_err(foreign);
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{foreign}");
        }
        assert!(
            guard
                .admit(&request(
                    "127.0.0.1:5001",
                    Some("https://console.example.com")
                ))
                .is_ok()
        );
    }

    #[test]
    fn rebinding_hosts_are_refused_only_while_auth_is_off() {
        let refused = guard(false)
            .admit(&request("evil.example:5001", None))
            .expect_err("a rebinding host");
        assert_eq!(refused.status, StatusCode::MISDIRECTED_REQUEST);
        assert!(
            guard(false)
                .admit(&request("proctor.internal:5001", None))
                .is_ok()
        );
        assert!(guard(true).admit(&request("evil.example", None)).is_ok());
        assert!(
            guard(true)
                .admit(&request("proctor.example", Some("https://proctor.example")))
                .is_ok(),
            "https origin, default port, behind a TLS proxy"
        );
    }

    #[test]
    fn json_content_types() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("Application/JSON; charset=utf-8")));
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
        ] {
            assert!(!is_json(&headers(other)), "{other}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
