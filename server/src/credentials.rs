//! Where callers put their credentials: the legacy `Access-Token` and `Email-Id` headers, an
//! `Authorization: Bearer` header, or, on websockets (where browsers cannot set headers), the
//! `connection_init` payload.

use axum::http::HeaderMap;
use proctor_schema::ports::authenticator::Credentials;
use serde_json::Value;

/// Credentials from HTTP headers.
pub fn from_headers(headers: &HeaderMap) -> Credentials {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    Credentials {
        email: header("email-id"),
        access_token: header("access-token"),
        bearer_token: header("authorization").as_deref().and_then(bearer),
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Credentials from a websocket `connection_init` payload. Clients spell the keys in many
/// ways (`Access-Token`, `accessToken`, `access_token`; `Email-Id`, `emailId`, `email`;
/// `Authorization`, `token`), at the top level or inside a `headers` object, as GraphiQL sends
/// them; all are accepted. Values found here win over the upgrade request's headers.
pub fn from_payload(payload: &Value, mut from_headers: Credentials) -> Credentials {
    let mut objects = vec![payload];
    if let Some(headers) = payload.get("headers") {
        objects.push(headers);
    }
    for object in objects {
        let Some(object) = object.as_object() else {
            continue;
        };
        for (key, value) in object {
            let Some(value) = value.as_str().map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            let normalized: String = key
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase())
                .collect();
            match normalized.as_str() {
                "accesstoken" => from_headers.access_token = Some(value.to_owned()),
                "emailid" | "email" => from_headers.email = Some(value.to_owned()),
                "authorization" => {
                    if let Some(token) = bearer(value) {
                        from_headers.bearer_token = Some(token);
                    }
                }
                "token" | "bearertoken" => from_headers.bearer_token = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    from_headers
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn legacy_and_bearer_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("Access-Token", HeaderValue::from_static("t1"));
        headers.insert("Email-Id", HeaderValue::from_static("ada@example.com"));
        headers.insert("Authorization", HeaderValue::from_static("bearer  t2 "));
        let credentials = from_headers(&headers);
        assert_eq!(credentials.access_token.as_deref(), Some("t1"));
        assert_eq!(credentials.email.as_deref(), Some("ada@example.com"));
        assert_eq!(credentials.bearer_token.as_deref(), Some("t2"));

        let mut basic = HeaderMap::new();
        basic.insert("Authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(from_headers(&basic), Credentials::default());
    }

    #[test]
    fn payload_spellings_and_nesting() {
        for payload in [
            json!({ "Access-Token": "t", "Email-Id": "a@b.c" }),
            json!({ "accessToken": "t", "emailId": "a@b.c" }),
            json!({ "headers": { "access_token": "t", "email": "a@b.c" } }),
        ] {
            let credentials = from_payload(&payload, Credentials::default());
            assert_eq!(credentials.access_token.as_deref(), Some("t"), "{payload}");
            assert_eq!(credentials.email.as_deref(), Some("a@b.c"), "{payload}");
        }
        let bearer = from_payload(
            &json!({ "Authorization": "Bearer x" }),
            Credentials::default(),
        );
        assert_eq!(bearer.bearer_token.as_deref(), Some("x"));
        let token = from_payload(&json!({ "token": "y" }), Credentials::default());
        assert_eq!(token.bearer_token.as_deref(), Some("y"));
    }

    #[test]
    fn payload_values_win_over_upgrade_headers() {
        let headers = Credentials {
            email: Some("old@example.com".into()),
            access_token: Some("old".into()),
            bearer_token: None,
        };
        let merged = from_payload(&json!({ "Access-Token": "new" }), headers);
        assert_eq!(merged.access_token.as_deref(), Some("new"));
        assert_eq!(merged.email.as_deref(), Some("old@example.com"));
    }
}
