//! GraphQL over HTTP, as the GraphQL over HTTP specification (graphql.github.io/graphql-over-http)
//! asks of servers.
//!
//! Invariants:
//! - **Media type.** The answer is `application/graphql-response+json` when the `Accept` header
//!   prefers it, `application/json` when it prefers that, names `*/*` or `application/*`, or is
//!   missing; a request accepting neither gets 406. The content type always says which.
//! - **Status.** A request that is not a GraphQL request (a body that is not a JSON object, no
//!   `query` string, `variables` or `extensions` not objects) gets 400 whatever the media type.
//!   A *request error* (the document does not parse or validate, a variable does not coerce,
//!   the operation is not found, a limit refuses it) gets 400 under
//!   `application/graphql-response+json` and 200 under `application/json`, and its body has no
//!   `data` entry. Anything that executed gets 200 with `data` (null when a non-null root field
//!   failed).
//! - **Methods.** POST takes `Content-Type: application/json` only (415 otherwise, see
//!   `crate::guard::require_json`); GET takes `query`, `operationName`, `variables` and
//!   `extensions` (JSON) in the URL and runs queries only (405 for a mutation: it would end up
//!   in logs and could be triggered by a link).

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// What the client accepts, in the server's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    /// `application/graphql-response+json`: status codes tell request errors apart.
    GraphQLResponse,
    /// `application/json`: every GraphQL answer is a 200.
    Json,
}

impl MediaType {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphQLResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }
}

/// The media type to answer in, from the `Accept` header: the acceptable one with the highest
/// quality (the first listed on a tie); `None` when neither is acceptable.
pub fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let ranges = crate::negotiation::ranges(headers, header::ACCEPT);
    if ranges.is_empty() {
        return Some(MediaType::Json);
    }
    let mut best: Option<(f32, MediaType)> = None;
    for (essence, quality) in ranges {
        let media = match essence.as_str() {
            "application/graphql-response+json" => MediaType::GraphQLResponse,
            "application/json" | "application/*" | "*/*" => MediaType::Json,
            _ => continue,
        };
        if quality > 0.0 && best.is_none_or(|(best_quality, _)| quality > best_quality) {
            best = Some((quality, media));
        }
    }
    best.map(|(_, media)| media)
}

/// 406 for a request that accepts no media type this endpoint answers in (said in JSON, which
/// a client that asked for something else may still read).
pub fn not_acceptable() -> Response {
    error(
        StatusCode::NOT_ACCEPTABLE,
        MediaType::Json,
        "Accept must allow application/graphql-response+json or application/json",
    )
}

/// An answer that is not a GraphQL response (the request was not a GraphQL request, or was
/// refused before it was read): one error, no `data`.
pub fn error(status: StatusCode, media: MediaType, message: &str) -> Response {
    let body =
        json!({ "errors": [{ "message": message, "extensions": { "code": "BAD_USER_INPUT" } }] });
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        body.to_string(),
    )
        .into_response()
}

/// Reads a POST body as a GraphQL request, or says why it is not one.
pub fn request_from_body(body: &Bytes) -> Result<async_graphql::Request, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    request_from_object(value)
}

/// Reads a GET URL's parameters as a GraphQL request, or says why it is not one.
pub fn request_from_query(query: Option<&str>) -> Result<async_graphql::Request, String> {
    let mut object = Map::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = match name.as_ref() {
            "query" | "operationName" => Value::String(value.into_owned()),
            "variables" | "extensions" => serde_json::from_str(&value)
                .map_err(|e| format!("the {name} parameter is not JSON: {e}"))?,
            _ => continue,
        };
        if object.insert(name.into_owned(), value).is_some() {
            return Err("a parameter is given twice".to_owned());
        }
    }
    request_from_object(Value::Object(object))
}

/// Checks the shape the specification gives a GraphQL request and builds it.
fn request_from_object(value: Value) -> Result<async_graphql::Request, String> {
    let Value::Object(object) = value else {
        return Err("a GraphQL request is a JSON object".to_owned());
    };
    let query = match object.get("query") {
        Some(Value::String(query)) => query.clone(),
        Some(_) => return Err("query must be a string".to_owned()),
        None => return Err("query is missing".to_owned()),
    };
    let mut request = async_graphql::Request::new(query);
    match object.get("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name.clone()),
        Some(_) => return Err("operationName must be a string".to_owned()),
    }
    match object.get("variables") {
        None | Some(Value::Null) => {}
        Some(variables @ Value::Object(_)) => {
            request = request.variables(async_graphql::Variables::from_json(variables.clone()));
        }
        Some(_) => return Err("variables must be an object".to_owned()),
    }
    match object.get("extensions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(extensions)) => {
            for (name, value) in extensions {
                let value = async_graphql::Value::from_json(value.clone())
                    .map_err(|e| format!("extensions.{name}: {e}"))?;
                request.extensions.insert(name.clone(), value);
            }
        }
        Some(_) => return Err("extensions must be an object".to_owned()),
    }
    Ok(request)
}

/// Whether the request's document names a mutation (GET must not run one). A document that
/// does not parse names none; executing it reports the parse error.
pub fn contains_mutation(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|document| {
        document
            .operations
            .iter()
            .any(|(_, operation)| operation.node.ty == OperationType::Mutation)
    })
}

/// A request error for a required variable (non-null, without a default) of the operation to
/// run that the request leaves out or sets to null. async-graphql notices only when a field
/// reads it, as a field error with a path; the specification makes it a request error, found
/// before anything executes.
pub fn missing_variable(
    request: &mut async_graphql::Request,
) -> Option<async_graphql::ServerError> {
    let variables = std::mem::take(&mut request.variables);
    let name = request.operation_name.clone();
    let missing = request.parsed_query().ok().and_then(|document| {
        let mut operations = document.operations.iter();
        let operation = match &name {
            Some(name) => operations
                .find(|(candidate, _)| candidate.is_some_and(|c| c.as_str() == name))
                .map(|(_, operation)| operation),
            None => match (operations.next(), operations.next()) {
                (Some((_, operation)), None) => Some(operation),
                _ => None, // Ambiguous: async-graphql reports that.
            },
        }?;
        operation
            .node
            .variable_definitions
            .iter()
            .find_map(|definition| {
                let definition = &definition.node;
                let required =
                    !definition.var_type.node.nullable && definition.default_value.is_none();
                let given = variables
                    .get(&definition.name.node)
                    .is_some_and(|value| *value != async_graphql::Value::Null);
                (required && !given).then(|| {
                    async_graphql::ServerError::new(
                        format!(
                            "variable ${} of required type {} was not provided",
                            definition.name.node, definition.var_type.node
                        ),
                        Some(definition.name.pos),
                    )
                })
            })
    });
    request.variables = variables;
    missing
}

/// Whether `response` reports a request error: nothing executed (no data), and no error
/// comes from a field (those carry a path).
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// The HTTP answer for an executed GraphQL request in `media`.
pub fn respond(response: async_graphql::Response, media: MediaType) -> Response {
    let request_error = is_request_error(&response);
    let mut body = Map::new();
    if !request_error {
        body.insert(
            "data".to_owned(),
            serde_json::to_value(&response.data).unwrap_or(Value::Null),
        );
    }
    if !response.errors.is_empty() {
        body.insert(
            "errors".to_owned(),
            serde_json::to_value(&response.errors).unwrap_or(Value::Null),
        );
    }
    if !response.extensions.is_empty() {
        body.insert(
            "extensions".to_owned(),
            serde_json::to_value(&response.extensions).unwrap_or(Value::Null),
        );
    }
    let status = if request_error && media == MediaType::GraphQLResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut answer = (status, Value::Object(body).to_string()).into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    if response.is_ok()
        && let Some(cache_control) = response.cache_control.value()
        && let Ok(value) = HeaderValue::from_str(&cache_control)
    {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.extend(response.http_headers);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepting(accept: Option<&str>) -> Option<MediaType> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, accept.parse().unwrap());
        }
        negotiate(&headers)
    }

    #[test]
    fn the_accept_header_chooses_the_media_type() {
        use MediaType::{GraphQLResponse, Json};
        assert_eq!(accepting(None), Some(Json), "missing");
        assert_eq!(accepting(Some("")), Some(Json), "empty");
        assert_eq!(accepting(Some("*/*")), Some(Json));
        assert_eq!(accepting(Some("application/*")), Some(Json));
        assert_eq!(accepting(Some("application/json")), Some(Json));
        assert_eq!(
            accepting(Some("application/graphql-response+json")),
            Some(GraphQLResponse)
        );
        assert_eq!(
            accepting(Some(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            Some(GraphQLResponse)
        );
        assert_eq!(
            accepting(Some("application/json, application/graphql-response+json")),
            Some(Json),
            "the first on a tie"
        );
        assert_eq!(
            accepting(Some(
                "application/json;q=0.5, application/graphql-response+json;q=0.8"
            )),
            Some(GraphQLResponse)
        );
        assert_eq!(
            accepting(Some("APPLICATION/JSON; charset=utf-8")),
            Some(Json)
        );
        assert_eq!(accepting(Some("text/html")), None);
        assert_eq!(accepting(Some("application/json;q=0")), None);
    }

    #[test]
    fn requests_are_checked_for_the_shape_of_a_graphql_request() {
        let ok = |body: &str| request_from_body(&Bytes::from(body.to_owned()));
        assert!(ok(r#"{"query":"{ a }"}"#).is_ok());
        assert!(ok(r#"{"query":"{ a }","variables":null,"operationName":null}"#).is_ok());
        for (body, says) in [
            ("not json", "not JSON"),
            ("[]", "JSON object"),
            (r#"{"variables":{}}"#, "query is missing"),
            (r#"{"query":1}"#, "query must be a string"),
            (
                r#"{"query":"{ a }","variables":[]}"#,
                "variables must be an object",
            ),
            (
                r#"{"query":"{ a }","operationName":2}"#,
                "operationName must be a string",
            ),
            (
                r#"{"query":"{ a }","extensions":"x"}"#,
                "extensions must be an object",
            ),
        ] {
            let error = ok(body).unwrap_err();
            assert!(error.contains(says), "{body}: {error}");
        }
        assert!(request_from_query(Some("query=%7B%20a%20%7D&variables=%7B%7D")).is_ok());
        assert!(
            request_from_query(Some("query=x&variables=nope"))
                .unwrap_err()
                .contains("variables parameter is not JSON")
        );
        assert!(request_from_query(None).unwrap_err().contains("missing"));
    }
}
